//! The edge router's routing table: the control plane's typed [`RouteTable`] for this worker,
//! pushed over the link and swapped whole.

use std::collections::HashMap;
use std::sync::Arc;

use wisehosting_proto::messages::RouteTable;

/// Where one app answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route's name (`app-<id>`), the label of its metrics.
    pub name: String,
    /// `host:port` of the app's server; `None` when the app does not run (answered 503).
    pub upstream: Option<String>,
    /// Plain-HTTP requests go to HTTPS when the router holds a certificate for the host.
    pub https_redirect: bool,
    /// HTTPS answers carry `Strict-Transport-Security`.
    pub hsts: bool,
}

/// Hostname (lowercase, no port) → route.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    pub hosts: HashMap<String, Arc<Route>>,
    /// The pushed table's version.
    pub version: u64,
}

impl Table {
    /// The table of a pushed [`RouteTable`]: each app answers on the worker's loopback at its
    /// published port. Hostnames are matched in lowercase, without a trailing dot.
    pub fn from_message(message: &RouteTable) -> Table {
        let mut table = Table { version: message.version, ..Table::default() };
        for entry in &message.routes {
            let upstream = entry.port.filter(|p| *p > 0).map(|p| format!("127.0.0.1:{p}"));
            let route = Arc::new(Route {
                name: format!("app-{}", entry.app_id),
                upstream,
                https_redirect: entry.https_redirect,
                hsts: entry.hsts,
            });
            for host in &entry.hosts {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                if !host.is_empty() {
                    table.hosts.insert(host, route.clone());
                }
            }
        }
        table
    }

    /// The route for a request's `Host` (any case, with or without a port).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Route>> {
        by_name(&self.hosts, host)
    }

    /// True when some route still sends traffic to `authority` (`host:port`).
    pub fn uses(&self, authority: &str) -> bool {
        self.hosts.values().any(|r| r.upstream.as_deref() == Some(authority))
    }
}

/// A `Host` value without its port and trailing dot.
pub(super) fn bare_host(host: &str) -> &str {
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .trim_end_matches('.')
}

/// The entry of `map` (keyed by lowercase names) for `host` — any case, with or without a
/// port or a trailing dot —: its own, else a one-label wildcard's (`a.b.c` matches `*.b.c`,
/// never `b.c` nor `x.a.b.c`). On the hot path: no allocation for a lowercase host found by
/// its own name.
pub(super) fn by_name<'a, V>(map: &'a HashMap<String, V>, host: &str) -> Option<&'a V> {
    let host = bare_host(host);
    let lower;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = host.to_ascii_lowercase();
        lower.as_str()
    } else {
        host
    };
    map.get(host).or_else(|| {
        let (_, parent) = host.split_once('.')?;
        map.get(&format!("*.{parent}"))
    })
}

#[cfg(test)]
mod tests {
    use wisehosting_proto::messages::RouteEntry;

    use super::*;

    fn entry(app_id: i64, hosts: &[&str], port: Option<u16>) -> RouteEntry {
        RouteEntry {
            app_id,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            port,
            https_redirect: true,
            hsts: false,
        }
    }

    #[test]
    fn a_pushed_table_becomes_a_host_table() {
        let message = RouteTable {
            version: 7,
            routes: vec![
                entry(1, &["Hello.localhost", "www.example.org."], Some(40001)),
                entry(2, &["off.localhost"], None),
            ],
        };
        let table = Table::from_message(&message);
        assert_eq!(table.version, 7);
        assert_eq!(
            table.lookup("hello.localhost:8080").and_then(|r| r.upstream.clone()).as_deref(),
            Some("127.0.0.1:40001")
        );
        assert_eq!(table.lookup("WWW.example.org").map(|r| r.name.as_str()), Some("app-1"));
        assert_eq!(table.lookup("off.localhost").map(|r| r.upstream.clone()), Some(None));
        assert!(table.lookup("unknown.localhost").is_none());
        assert!(table.uses("127.0.0.1:40001") && !table.uses("127.0.0.1:40002"));
    }

    #[test]
    fn a_wildcard_matches_exactly_one_label_and_exact_names_win() {
        let message = RouteTable {
            version: 1,
            routes: vec![
                entry(1, &["*.shops.example.org"], Some(1)),
                entry(2, &["vip.shops.example.org"], Some(2)),
            ],
        };
        let table = Table::from_message(&message);
        assert_eq!(table.lookup("a.shops.example.org").map(|r| r.name.as_str()), Some("app-1"));
        assert_eq!(table.lookup("VIP.shops.example.org:80").map(|r| r.name.as_str()), Some("app-2"));
        assert!(table.lookup("a.b.shops.example.org").is_none(), "one label only");
        assert!(table.lookup("shops.example.org").is_none());
    }
}
