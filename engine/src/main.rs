fn main() {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`runbook show ID | head`) instead of failing on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(runbook::cli::main());
}
