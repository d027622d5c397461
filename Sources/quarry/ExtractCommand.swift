import ArgumentParser

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "extract", abstract: "(being built)")
    func run() throws { throw ValidationError("'quarry extract' is not built yet") }
}
