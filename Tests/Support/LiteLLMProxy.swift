/// A shell script that starts the LiteLLM proxy, or stops the running one (the pid in
/// `folder/proxy.pid`, by that pid) and starts it again, and waits until it answers: what a test
/// gives the `ai-gateway` baseline as its reload command, instead of a systemd unit.
///
/// The proxy is started through Python's subprocess, which closes every other descriptor (the
/// test's Foundation.Process would otherwise wait for the proxy through one it inherited), in a
/// session of its own, its output appended to `folder/proxy.log`. The first start binds port 0,
/// and the port uvicorn says it bound is kept in `folder/proxy.port`: no other test can take it
/// before the proxy has it. A restart binds that port again.
/// - Parameters:
///   - python: the Python that starts it (the proxy's own).
///   - environment: `NAME=value` assignments for the proxy, separated by spaces.
///   - command: the proxy and its arguments, without `--host` and `--port`.
public func liteLLMProxyScript(folder: String, python: String, environment: String, command: String) -> String {
    let spawn = "import subprocess, sys; print(subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, "
        + "stdout=open(sys.argv[1], 'ab'), stderr=subprocess.STDOUT, start_new_session=True).pid)"
    return """
        #!/bin/sh
        dir=\(folder)
        if [ -f $dir/proxy.pid ]; then
          kill $(cat $dir/proxy.pid) 2>/dev/null
          while kill -0 $(cat $dir/proxy.pid) 2>/dev/null; do sleep 0.2; done
        fi
        port=$(cat $dir/proxy.port 2>/dev/null || echo 0)
        \(environment) \\
          \(python) -c "\(spawn)" $dir/proxy.log \(command) --host 127.0.0.1 --port $port >$dir/proxy.pid
        i=0
        while [ $i -lt 1200 ]; do
          if [ "$port" = 0 ]; then
            port=$(sed -n 's|.*Uvicorn running on http://127\\.0\\.0\\.1:\\([0-9][0-9]*\\).*|\\1|p' $dir/proxy.log 2>/dev/null | head -1)
            if [ -n "$port" ]; then echo $port >$dir/proxy.port; else port=0; fi
          fi
          [ "$port" != 0 ] && /usr/bin/curl -sf -o /dev/null http://127.0.0.1:$port/health/liveliness && exit 0
          kill -0 $(cat $dir/proxy.pid) 2>/dev/null || { tail -5 $dir/proxy.log >&2; exit 1; }
          sleep 0.5; i=$((i+1))
        done
        exit 1

        """
}
