//! Structured logs: JSON lines by default, human-readable with `--log-devel`.
//!
//! `--log-level` takes the Go version's numeric verbosity (default 5; 8 or more is verbose)
//! or a name (error, warn, info, debug, trace), or a full `tracing` filter directive.

use tracing_subscriber::EnvFilter;

/// Maps `--log-level` to a filter directive.
pub fn directive(level: &str) -> String {
    match level.trim().parse::<i64>() {
        Ok(n) if n < 0 => "error".into(),
        Ok(0) => "warn".into(),
        Ok(1..=5) => "info".into(),
        Ok(6..=7) => "debug".into(),
        Ok(_) => "trace".into(),
        Err(_) => level.trim().to_ascii_lowercase(),
    }
}

/// Installs the global subscriber.
pub fn init(level: &str, devel: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(directive(level))
        .map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if devel {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    result.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_levels_and_names() {
        assert_eq!(directive("5"), "info");
        assert_eq!(directive("8"), "trace");
        assert_eq!(directive("0"), "warn");
        assert_eq!(directive("DEBUG"), "debug");
    }
}
