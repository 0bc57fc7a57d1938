//! The faults the harness injects, and the one-line protocol that carries replica faults
//! from the harness to its child server (the child's stdin).
//!
//! Two layers: [`ReplicaFault`]s happen inside the child's replica client (a wrapper around
//! the real one, see [`crate::child`]), so they apply to file and S3 replicas alike;
//! network faults ([`testkit::proxy::NetFault`]) happen in a TCP proxy between the child and
//! the S3 server. Both are chosen by [`Fault::random`] from the run's seed.

use std::fmt;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use testkit::proxy::NetFault;

/// What the fault-injecting replica client does while a fault is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFault {
    /// Nothing: every operation goes to the real client.
    None,
    /// Every operation fails at once.
    Error,
    /// Every operation waits this long first.
    Delay(Duration),
    /// Every operation waits (asynchronously) until the fault ends: a replica that never
    /// answers.
    Hang,
    /// Every operation blocks a thread until the fault ends: a file replica on a dead NFS
    /// mount.
    Block,
    /// Writes send half of their body, then fail; reads return half of the file, then fail;
    /// other operations fail: a connection cut in the middle of a transfer.
    Cut,
}

impl ReplicaFault {
    /// The line that puts this fault in force for `for_` (`replica <kind> <ms> [<ms>]`).
    pub fn line(&self, for_: Duration) -> String {
        let ms = for_.as_millis();
        match self {
            ReplicaFault::None => "replica none 0".to_string(),
            ReplicaFault::Error => format!("replica error {ms}"),
            ReplicaFault::Delay(d) => format!("replica delay {ms} {}", d.as_millis()),
            ReplicaFault::Hang => format!("replica hang {ms}"),
            ReplicaFault::Block => format!("replica block {ms}"),
            ReplicaFault::Cut => format!("replica cut {ms}"),
        }
    }

    /// Parses [`ReplicaFault::line`]: the fault and how long it lasts.
    pub fn parse(line: &str) -> Option<(ReplicaFault, Duration)> {
        let mut words = line.split_whitespace();
        if words.next()? != "replica" {
            return None;
        }
        let kind = words.next()?;
        let ms: u64 = words.next()?.parse().ok()?;
        let fault = match kind {
            "none" => ReplicaFault::None,
            "error" => ReplicaFault::Error,
            "delay" => ReplicaFault::Delay(Duration::from_millis(words.next()?.parse().ok()?)),
            "hang" => ReplicaFault::Hang,
            "block" => ReplicaFault::Block,
            "cut" => ReplicaFault::Cut,
            _ => return None,
        };
        Some((fault, Duration::from_millis(ms)))
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// In the child's replica client.
    Replica(ReplicaFault),
    /// In the TCP proxy in front of the S3 server.
    Net(NetFault),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Replica(r) => write!(f, "replica {r:?}"),
            Fault::Net(n) => write!(f, "network {n:?}"),
        }
    }
}

impl Fault {
    /// A random fault; network faults only when there is a proxy (S3 replicas).
    pub fn random(rng: &mut StdRng, network: bool) -> Fault {
        let n = if network { 10 } else { 5 };
        match rng.random_range(0..n) {
            0 => Fault::Replica(ReplicaFault::Error),
            1 => Fault::Replica(ReplicaFault::Delay(Duration::from_millis(
                rng.random_range(20..600),
            ))),
            2 => Fault::Replica(ReplicaFault::Hang),
            3 => Fault::Replica(ReplicaFault::Block),
            4 => Fault::Replica(ReplicaFault::Cut),
            5 => Fault::Net(NetFault::Silent),
            6 => Fault::Net(NetFault::Delay(Duration::from_millis(
                rng.random_range(10..300),
            ))),
            7 => Fault::Net(NetFault::Reset),
            8 => Fault::Net(NetFault::CutAfter(rng.random_range(100..6000))),
            _ => Fault::Net(NetFault::Refuse),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for f in [
            ReplicaFault::None,
            ReplicaFault::Error,
            ReplicaFault::Delay(Duration::from_millis(250)),
            ReplicaFault::Hang,
            ReplicaFault::Block,
            ReplicaFault::Cut,
        ] {
            let line = f.line(Duration::from_millis(1500));
            let (parsed, d) =
                ReplicaFault::parse(&line).unwrap_or((ReplicaFault::None, Duration::ZERO));
            assert_eq!(parsed, f, "{line}");
            if f != ReplicaFault::None {
                assert_eq!(d, Duration::from_millis(1500), "{line}");
            }
        }
        assert_eq!(ReplicaFault::parse("replica nonsense 5"), None);
        assert_eq!(ReplicaFault::parse("hello"), None);
    }
}
