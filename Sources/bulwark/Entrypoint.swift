import BulwarkCommands
import CLinux

@main
struct Entrypoint {
    static func main() async {
        // One malloc arena: glibc gives each thread that meets a busy arena its own, up to eight
        // per core, and a pass's threads (the cooperative pool, blocking work, libgit2's) left
        // about 3 MiB of partly used arenas resident for no measurable speed.
        _ = bulwark_limit_malloc_arenas(1)
        await Bulwark.runFromCommandLine()
    }
}
