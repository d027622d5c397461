// The quarry command-line tool. One file a subcommand; shared options live in Options.swift.

import ArgumentParser

@main
struct QuarryTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarry",
        abstract: "Fast deep-learning feature extraction on CPUs and OpenCL devices.",
        version: quarryVersion,
        subcommands: [ExtractCommand.self, RunCommand.self, BenchCommand.self, DevicesCommand.self, ModelsCommand.self, TuneCommand.self, TestOpsCommand.self]
    )
}

/// The tool's version (`quarry --version`, the bundle's file name).
let quarryVersion = "0.1.0"
