//! `vxrouter-cni`: the CNI plugin binary. The runtime runs it with the
//! `CNI_*` variables set and the network configuration on stdin; it prints
//! a result or an error object on stdout and logs to stderr. All logic is
//! in [`vxrouter::cni`].

use std::io::{Read, Write};

use vxrouter::cni::{self, config::MAX_STDIN, System};

fn main() {
    let env: std::collections::HashMap<String, std::ffi::OsString> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .collect();
    let mut fx = System::new(env.clone());
    let mut stdin = Vec::new();
    // One byte past the limit tells a too-long config from one at the limit.
    let read = std::io::stdin()
        .lock()
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut stdin);
    let out = match read {
        Ok(_) => cni::run(&env, &stdin, &mut fx),
        Err(e) => cni::unreadable_stdin(&e, &mut fx),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&out.stdout)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(1);
    }
    std::process::exit(out.exit);
}
