import ArgumentParser

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "devices", abstract: "(being built)")
    func run() throws { throw ValidationError("'quarry devices' is not built yet") }
}
