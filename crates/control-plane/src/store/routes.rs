//! The routing table (SPEC §7): which hostnames lead to which app, and where the app answers.
//! Read by the Traefik config endpoints; rendered as Traefik dynamic configuration JSON.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::domain::AppStatus;

/// One deployed app as routing sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RouteRow {
    pub app_id: i64,
    pub slug: String,
    pub status: AppStatus,
    pub host_port: Option<i32>,
    pub worker_id: i64,
    pub zone: Option<String>,
    pub wg_ip: Option<String>,
    /// Verified custom domains, sorted.
    pub domains: Vec<String>,
}

impl RouteRow {
    /// The hostnames of the app: `<slug>.<zone>` when the worker has a zone, else
    /// `<slug>.<subdomain_base>`; then every verified custom domain.
    pub fn hostnames(&self, subdomain_base: &str) -> Vec<String> {
        let suffix = self.zone.as_deref().filter(|z| !z.is_empty()).unwrap_or(subdomain_base);
        let mut names = vec![format!("{}.{}", self.slug, suffix.trim_matches('.'))];
        names.extend(self.domains.iter().cloned());
        names
    }

    /// True when the app should receive traffic: running, on a known port.
    pub fn serving(&self) -> bool {
        self.host_port.is_some() && AppStatus::ROUTABLE.contains(&self.status)
    }
}

/// Every app with a running or stopped version (ever deployed), on `worker` or on all.
pub async fn list(db: &PgPool, worker: Option<i64>) -> Result<Vec<RouteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id AS app_id, a.slug, a.status, a.host_port, w.id AS worker_id, w.zone,
                host(w.wg_ip) AS wg_ip,
                COALESCE((SELECT array_agg(d.hostname ORDER BY d.hostname) FROM domains d
                          WHERE d.app_id = a.id AND d.verified_at IS NOT NULL), '{}') AS domains
         FROM apps a JOIN workers w ON w.id = a.worker_id
         WHERE a.current_deployment_id IS NOT NULL AND a.status <> $2
           AND ($1::bigint IS NULL OR a.worker_id = $1)
         ORDER BY a.id",
    )
    .bind(worker)
    .bind(AppStatus::Deleting)
    .fetch_all(db)
    .await
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
}
