use std::process::ExitCode;

/// The one place an error is printed: `sshkeep: ...` (or OpenSSH's words), then the exit.
fn main() -> ExitCode {
    match sshkeep::daemon::main() {
        Ok(code) => code,
        Err(fatal) => {
            if !fatal.is_silent() {
                sshkeep::log::to_user(format_args!("{fatal}"));
            }
            fatal.code()
        }
    }
}
