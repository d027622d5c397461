// Embeds Kernels/*.cl in QuarryOpenCL at build time: a generated Swift file holds each file's text
// under its base name, so the library needs no resource bundle and a shipped binary carries its
// kernels. Editing a .cl file reruns the generator (the files are the command's inputs).

import Foundation
import PackagePlugin

@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let dir = context.package.directoryURL.appending(path: "Kernels")
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "cl" || $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) OpenCL kernel files",
                executable: try context.tool(named: "EmbedKernelsTool").url,
                arguments: [output.path] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output]),
        ]
    }
}
