import BulwarkCommands

@main
struct Entrypoint {
    static func main() async {
        Bulwark.prepareProcess()
        await Bulwark.runFromCommandLine()
    }
}
