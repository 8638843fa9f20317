//! Routing (SPEC §7), from one table: the apps of `store::routes`, their hostnames and
//! whether they serve. Workers get it as a typed [`RouteTable`] pushed over the link, on
//! connect and after every change (no polling, no rule strings to parse back); real Traefik
//! and the central proxy get it rendered as Traefik dynamic configuration
//! ([`traefik_config`], for `/v1/traefik/*` only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Sealer;
use wisehosting_proto::job::WireSecret;
use wisehosting_proto::messages::{EdgeCertificate, EdgeCertificates, RouteEntry, RouteTable};

use crate::domain::AppStatus;
use crate::hub::{Hub, Outgoing};
use crate::store::certificates;
use crate::store::routes::{self, RouteRow};

impl RouteRow {
    /// The hostnames of the app: `<slug>.<zone>` when the worker has a zone, else
    /// `<slug>.<subdomain_base>`; then every verified custom domain.
    pub fn hostnames(&self, subdomain_base: &str) -> Vec<String> {
        let mut names = vec![platform_hostname(&self.slug, self.zone.as_deref(), subdomain_base)];
        names.extend(self.domains.iter().cloned());
        names
    }

    /// True when the app should receive traffic: running, on a known port.
    pub fn serving(&self) -> bool {
        self.host_port.is_some() && AppStatus::ROUTABLE.contains(&self.status)
    }
}

/// An app's own hostname: `<slug>.<zone>` when its worker has a zone, else
/// `<slug>.<subdomain_base>`.
pub fn platform_hostname(slug: &str, zone: Option<&str>, subdomain_base: &str) -> String {
    let suffix = zone.filter(|z| !z.is_empty()).unwrap_or(subdomain_base);
    format!("{slug}.{}", suffix.trim_matches('.'))
}

/// The table a worker's edge router serves: each app at its hostnames, on the port it is
/// published at on that worker (none while it does not serve: 503).
pub fn worker_table(rows: &[RouteRow], subdomain_base: &str, version: u64) -> RouteTable {
    let routes = rows
        .iter()
        .map(|row| RouteEntry {
            app_id: row.app_id,
            hosts: row.hostnames(subdomain_base),
            port: row.host_port.and_then(|p| u16::try_from(p).ok()).filter(|_| row.serving()),
            https_redirect: row.https_redirect,
            hsts: row.hsts,
        })
        .collect();
    RouteTable { version, routes }
}

/// Table versions: they only grow, across restarts too (the clock's milliseconds at least).
#[derive(Debug, Default)]
struct Versions(AtomicU64);

impl Versions {
    fn next(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = (current + 1).max(now);
            match self.0.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Pushes each worker its table, and the certificates its edge router serves, whenever the
/// hub says they may have changed; changes that come in together are coalesced, one push per
/// worker, in order.
pub fn spawn_pusher(
    db: PgPool,
    sealer: Arc<Sealer>,
    hub: Hub,
    subdomain_base: String,
    shutdown: CancellationToken,
) {
    let Some(mut changes) = hub.take_route_changes() else {
        tracing::error!("route changes are already being pushed elsewhere; not starting a second pusher");
        return;
    };
    let versions = Versions::default();
    let mut sent = SentCertificates::default();
    tokio::spawn(hub.clone().track(async move {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                first = changes.recv() => match first {
                    Some(change) => change,
                    None => return,
                },
            };
            // Worker → whether it has just connected.
            let mut workers = BTreeMap::from([(first.worker_id, first.connected)]);
            while let Ok(change) = changes.try_recv() {
                *workers.entry(change.worker_id).or_default() |= change.connected;
            }
            for (worker, connected) in workers {
                if !hub.is_connected(worker) {
                    sent.0.remove(&worker);
                    // Held by the other control plane of a pair, maybe: it pushes them.
                    if let Err(e) = routes::notify_changed(&db, worker).await {
                        tracing::warn!(worker, error = %e, "cannot tell the other control planes of a route change");
                    }
                    continue;
                }
                match routes::list(&db, Some(worker)).await {
                    Ok(rows) => {
                        let table = worker_table(&rows, &subdomain_base, versions.next());
                        let _ = hub.send(worker, Outgoing::of(&table));
                    }
                    // The next change, or the worker's next connection, pushes it again.
                    Err(e) => tracing::warn!(worker, error = %e, "cannot read a worker's routes"),
                }
                if let Err(e) = sent.push(&db, &sealer, &hub, worker, connected).await {
                    tracing::warn!(worker, error = %e, "cannot push a worker's certificates");
                }
            }
        }
    }));
}

/// Certificates in one `edge_certificates` frame: a chain and its key are a few KiB, a frame
/// at most 2 MiB.
const CERTIFICATES_PER_FRAME: usize = 100;

/// What each connected worker was sent of its certificates (domain id → version), so a change
/// pushes only what changed.
#[derive(Debug, Default)]
struct SentCertificates(HashMap<i64, HashMap<i64, String>>);

impl SentCertificates {
    /// Pushes `worker` its new and renewed certificates; with `retain` when some went away or
    /// it has just connected (then everything is new to it).
    async fn push(
        &mut self,
        db: &PgPool,
        sealer: &Sealer,
        hub: &Hub,
        worker: i64,
        connected: bool,
    ) -> Result<(), crate::store::StoreError> {
        let current = certificates::served_by(db, worker).await?;
        let known = self.0.entry(worker).or_default();
        if connected {
            known.clear();
        }
        let changed: Vec<i64> = current
            .iter()
            .filter(|(id, version)| known.get(id) != Some(version))
            .map(|(id, _)| *id)
            .collect();
        let gone = known.keys().any(|id| !current.iter().any(|(c, _)| c == id));
        if changed.is_empty() && !gone && !connected {
            return Ok(());
        }
        let served = certificates::served(db, sealer, &changed).await?;
        let mut frames: Vec<EdgeCertificates> = served
            .chunks(CERTIFICATES_PER_FRAME)
            .map(|chunk| EdgeCertificates {
                certificates: chunk
                    .iter()
                    .map(|c| EdgeCertificate {
                        id: c.domain_id,
                        names: c.names.clone(),
                        chain_pem: c.chain_pem.clone(),
                        key_pem: WireSecret::new(c.key_pem.expose()),
                    })
                    .collect(),
                retain: None,
            })
            .collect();
        if gone || connected {
            match frames.last_mut() {
                Some(last) => last.retain = Some(current.iter().map(|(id, _)| *id).collect()),
                None => frames.push(EdgeCertificates {
                    certificates: Vec::new(),
                    retain: Some(current.iter().map(|(id, _)| *id).collect()),
                }),
            }
        }
        for frame in &frames {
            if hub.send(worker, Outgoing::of(frame)).is_err() {
                // Gone meanwhile: it gets everything when it connects again.
                self.0.remove(&worker);
                return Ok(());
            }
        }
        *known = current.into_iter().collect();
        Ok(())
    }
}

/// Traefik dynamic configuration for `rows`. `upstream` names where an app answers (None:
/// leave the app out); an app that does not serve gets a service with no servers, which
/// Traefik and the edge router answer with 503. Keys are sorted, so equal tables render to
/// equal bytes (and equal ETags).
pub fn traefik_config(
    rows: &[RouteRow],
    subdomain_base: &str,
    cert_resolver: &str,
    upstream: impl Fn(&RouteRow) -> Option<String>,
) -> Value {
    let mut routers = BTreeMap::new();
    let mut services = BTreeMap::new();
    for row in rows {
        let Some(url) = upstream(row) else { continue };
        let name = format!("app-{}", row.app_id);
        let rule =
            row.hostnames(subdomain_base).iter().map(|h| host_matcher(h)).collect::<Vec<_>>().join(" || ");
        let mut router = json!({ "rule": rule, "service": name });
        if !cert_resolver.is_empty() {
            router["tls"] = json!({ "certResolver": cert_resolver });
        }
        routers.insert(name.clone(), router);
        let servers = if row.serving() { vec![json!({ "url": url })] } else { Vec::new() };
        services.insert(name, json!({ "loadBalancer": { "servers": servers } }));
    }
    json!({ "http": { "routers": routers, "services": services } })
}

/// `Host(`a.b`)`, or for a wildcard `*.b.c` the one-label pattern
/// `HostRegexp(`^[a-z0-9-]+\.b\.c$`)` (the shape the edge router reads back).
fn host_matcher(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(suffix) => format!("HostRegexp(`^[a-z0-9-]+\\.{}$`)", suffix.replace('.', "\\.")),
        None => format!("Host(`{host}`)"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(id: i64, slug: &str, status: &str, port: Option<i32>) -> RouteRow {
        RouteRow {
            app_id: id,
            slug: slug.into(),
            status: AppStatus::parse(status).unwrap_or(AppStatus::Created),
            host_port: port,
            worker_id: 1,
            zone: None,
            wg_ip: Some("10.50.0.2".into()),
            domains: Vec::new(),
            https_redirect: true,
            hsts: false,
        }
    }

    #[test]
    fn the_config_has_a_router_and_a_service_per_app_in_traefiks_shape() {
        let mut a = row(1, "hello", "running", Some(40001));
        a.domains = vec!["www.example.org".into()];
        let b = row(2, "paused", "stopped", Some(40002));
        let config = traefik_config(&[a, b], "localhost", "", |r| {
            Some(format!("http://127.0.0.1:{}", r.host_port.unwrap_or_default()))
        });
        assert_eq!(
            config["http"]["routers"]["app-1"]["rule"],
            "Host(`hello.localhost`) || Host(`www.example.org`)"
        );
        assert_eq!(config["http"]["routers"]["app-1"]["service"], "app-1");
        assert!(config["http"]["routers"]["app-1"].get("tls").is_none());
        assert_eq!(
            config["http"]["services"]["app-1"]["loadBalancer"]["servers"][0]["url"],
            "http://127.0.0.1:40001"
        );
        // A stopped app keeps its router, with no server: a 503, not a 404.
        assert_eq!(config["http"]["services"]["app-2"]["loadBalancer"]["servers"], json!([]));
    }

    #[test]
    fn a_wildcard_domain_becomes_a_one_label_host_regexp() {
        let mut a = row(4, "shop", "running", Some(1));
        a.domains = vec!["*.shops.example.org".into()];
        let config = traefik_config(&[a], "localhost", "", |_| Some("http://x:1".into()));
        assert_eq!(
            config["http"]["routers"]["app-4"]["rule"],
            "Host(`shop.localhost`) || HostRegexp(`^[a-z0-9-]+\\.shops\\.example\\.org$`)"
        );
    }

    #[test]
    fn a_zone_replaces_the_subdomain_base_and_a_resolver_adds_tls() {
        let mut a = row(3, "api", "running", Some(1));
        a.zone = Some("eu.apps.example.com".into());
        let config = traefik_config(&[a], "apps.example.com", "le", |_| Some("http://x:1".into()));
        assert_eq!(config["http"]["routers"]["app-3"]["rule"], "Host(`api.eu.apps.example.com`)");
        assert_eq!(config["http"]["routers"]["app-3"]["tls"]["certResolver"], "le");
    }

    #[test]
    fn apps_without_an_upstream_are_left_out_and_rendering_is_stable() {
        let rows = [row(1, "a", "running", Some(1)), row(2, "b", "running", Some(2))];
        let only_even = |r: &RouteRow| (r.app_id % 2 == 0).then(|| "http://x:2".to_string());
        let config = traefik_config(&rows, "localhost", "", only_even);
        assert!(config["http"]["routers"].get("app-1").is_none());
        let again = traefik_config(&rows, "localhost", "", only_even);
        assert_eq!(config.to_string(), again.to_string());
    }

    #[test]
    fn a_worker_table_lists_every_app_with_its_port_only_while_it_serves() {
        let mut a = row(1, "hello", "running", Some(40001));
        a.domains = vec!["*.shops.example.org".into()];
        let b = row(2, "paused", "stopped", Some(40002));
        let table = worker_table(&[a, b], "localhost", 9);
        assert_eq!(table.version, 9);
        assert_eq!(table.routes[0].hosts, ["hello.localhost", "*.shops.example.org"]);
        assert_eq!(table.routes[0].port, Some(40001));
        assert_eq!(table.routes[1].port, None, "a stopped app is known (503), not routed");
    }

    #[test]
    fn table_versions_only_grow() {
        let versions = Versions::default();
        let first = versions.next();
        assert!(first > 1_600_000_000_000, "versions start at the clock: {first}");
        let mut last = first;
        for _ in 0..1000 {
            let next = versions.next();
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }
}
