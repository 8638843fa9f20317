//! The edge router's routing table, read from Traefik dynamic configuration JSON (the same
//! document the control plane serves to real Traefik), and swapped whole.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Where one app answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The router's name (`app-<id>`), the label of its metrics.
    pub name: String,
    /// `host:port` of the app's server; `None` when the app does not run (answered 503).
    pub upstream: Option<String>,
}

/// Hostname (lowercase, no port) → route.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    pub hosts: HashMap<String, Arc<Route>>,
}

impl Table {
    /// Reads a Traefik dynamic configuration. Routers whose rule is not made only of
    /// `Host(`…`)` terms joined by `||`, or whose service is missing, are skipped and named in
    /// the returned warnings; the rest of the table still applies.
    pub fn from_traefik(config: &Value) -> (Table, Vec<String>) {
        let mut table = Table::default();
        let mut warnings = Vec::new();
        let empty = serde_json::Map::new();
        let routers = config["http"]["routers"].as_object().unwrap_or(&empty);
        let services = config["http"]["services"].as_object().unwrap_or(&empty);
        for (name, router) in routers {
            let Some(hosts) = router["rule"].as_str().and_then(parse_host_rule) else {
                warnings.push(format!("router {name}: only Host(`…`) rules joined by || are understood"));
                continue;
            };
            let Some(service) = router["service"].as_str().and_then(|s| services.get(s)) else {
                warnings.push(format!("router {name}: its service is missing"));
                continue;
            };
            let upstream = service["loadBalancer"]["servers"][0]["url"].as_str().and_then(authority_of);
            let route = Arc::new(Route { name: name.clone(), upstream });
            for host in hosts {
                table.hosts.insert(host, route.clone());
            }
        }
        (table, warnings)
    }

    /// The route for a request's `Host` (any case, with or without a port).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Route>> {
        let host = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        let host = host.trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        self.hosts.get(host).or_else(|| {
            // A one-label wildcard: `a.b.c` matches `*.b.c`.
            let (_, parent) = host.split_once('.')?;
            self.hosts.get(&format!("*.{parent}"))
        })
    }

    /// True when some route still sends traffic to `authority` (`host:port`).
    pub fn uses(&self, authority: &str) -> bool {
        self.hosts.values().any(|r| r.upstream.as_deref() == Some(authority))
    }
}

/// The one-label wildcard pattern the control plane writes for `*.suffix`.
const WILDCARD_PREFIX: &str = "^[a-z0-9-]+\\.";

/// `HostRegexp(`^[a-z0-9-]+\.b\.c$`)` → `*.b.c`; other patterns → `None`.
fn parse_wildcard(term: &str) -> Option<String> {
    let pattern = term.strip_prefix("HostRegexp(`")?.strip_suffix("`)")?;
    let suffix = pattern.strip_prefix(WILDCARD_PREFIX)?.strip_suffix('$')?.replace("\\.", ".");
    let plain = suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (plain && suffix.contains('.') && !suffix.starts_with('.'))
        .then(|| format!("*.{}", suffix.to_ascii_lowercase()))
}

/// `Host(`a`) || Host(`b`)` → `["a", "b"]` (lowercased), with one-label wildcards as
/// `*.suffix`; anything else → `None`.
fn parse_host_rule(rule: &str) -> Option<Vec<String>> {
    let mut hosts = Vec::new();
    for term in rule.split("||") {
        if let Some(wildcard) = parse_wildcard(term.trim()) {
            hosts.push(wildcard);
            continue;
        }
        let inner = term.trim().strip_prefix("Host(")?.strip_suffix(')')?;
        for name in inner.split(',') {
            let name = name.trim().strip_prefix('`')?.strip_suffix('`')?;
            if name.is_empty() || name.contains('`') {
                return None;
            }
            hosts.push(name.to_ascii_lowercase());
        }
    }
    (!hosts.is_empty()).then_some(hosts)
}

/// `http://host:port[/]` → `host:port`; other schemes or shapes → `None`.
fn authority_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && !host.contains('/') && !host.contains('@')).then(|| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_traefik_document_becomes_a_host_table() {
        let config = json!({"http": {
            "routers": {
                "app-1": {"rule": "Host(`Hello.localhost`) || Host(`www.example.org`)", "service": "app-1"},
                "app-2": {"rule": "Host(`off.localhost`)", "service": "app-2"},
                "odd": {"rule": "PathPrefix(`/x`)", "service": "app-1"},
                "lost": {"rule": "Host(`lost.localhost`)", "service": "nowhere"}
            },
            "services": {
                "app-1": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:40001"}]}},
                "app-2": {"loadBalancer": {"servers": []}}
            }
        }});
        let (table, warnings) = Table::from_traefik(&config);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(
            table.lookup("hello.localhost:8080").and_then(|r| r.upstream.clone()).as_deref(),
            Some("127.0.0.1:40001")
        );
        assert_eq!(table.lookup("WWW.example.org").map(|r| r.name.as_str()), Some("app-1"));
        assert_eq!(table.lookup("off.localhost").map(|r| r.upstream.clone()), Some(None));
        assert!(table.lookup("lost.localhost").is_none());
        assert!(table.lookup("unknown.localhost").is_none());
        assert!(table.uses("127.0.0.1:40001") && !table.uses("127.0.0.1:40002"));
    }

    #[test]
    fn only_plain_http_upstreams_and_host_rules_are_understood() {
        assert_eq!(authority_of("http://10.0.0.2:8080/"), Some("10.0.0.2:8080".into()));
        for bad in ["https://x:1", "http://x", "http://u@x:1", "http://:1", "http://x:99999"] {
            assert_eq!(authority_of(bad), None, "{bad}");
        }
        assert_eq!(parse_host_rule("Host(`a`, `b`)"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(parse_host_rule("Host(`a`) && Path(`/`)"), None);
        assert_eq!(parse_host_rule(""), None);
        assert_eq!(
            parse_host_rule("Host(`a`) || HostRegexp(`^[a-z0-9-]+\\.Shops\\.example\\.org$`)"),
            Some(vec!["a".into(), "*.shops.example.org".into()])
        );
        assert_eq!(parse_host_rule("HostRegexp(`^.*$`)"), None, "only the one-label shape");
    }

    #[test]
    fn a_wildcard_matches_exactly_one_label_and_exact_names_win() {
        let config = json!({"http": {
            "routers": {
                "app-1": {"rule": "HostRegexp(`^[a-z0-9-]+\\.shops\\.example\\.org$`)", "service": "app-1"},
                "app-2": {"rule": "Host(`vip.shops.example.org`)", "service": "app-2"}
            },
            "services": {
                "app-1": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}},
                "app-2": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:2"}]}}
            }
        }});
        let (table, warnings) = Table::from_traefik(&config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(table.lookup("a.shops.example.org").map(|r| r.name.as_str()), Some("app-1"));
        assert_eq!(table.lookup("VIP.shops.example.org:80").map(|r| r.name.as_str()), Some("app-2"));
        assert!(table.lookup("a.b.shops.example.org").is_none(), "one label only");
        assert!(table.lookup("shops.example.org").is_none());
    }
}
