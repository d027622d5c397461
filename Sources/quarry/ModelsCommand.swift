import ArgumentParser

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "(being built)")
    func run() throws { throw ValidationError("'quarry models' is not built yet") }
}
