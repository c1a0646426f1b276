//! `--key value` flags for the small assembling binaries (no dependency).

use std::collections::BTreeMap;

/// Parses `--key value` pairs; `--help` prints `usage` and exits.
pub fn parse(usage: &str, known: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--help" || a == "-h" {
            println!("{usage}");
            std::process::exit(0);
        }
        let key = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}\n\n{usage}"))?;
        if !known.contains(&key) {
            return Err(format!("unknown flag --{key}\n\n{usage}"));
        }
        let value = args.next().ok_or_else(|| format!("--{key} needs a value"))?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// Waits for SIGINT or SIGTERM.
pub async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
