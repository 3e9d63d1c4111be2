import BulwarkCommands

@main
struct Entrypoint {
    static func main() async {
        await Bulwark.runFromCommandLine()
    }
}
