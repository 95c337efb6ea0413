use std::process::ExitCode;

fn main() -> ExitCode {
    sshkeep::daemon::main()
}
