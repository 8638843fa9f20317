//! Fetching the code: where a repository may be fetched from (every address of its host
//! public, resolved once and pinned — SECURITY-TESTS T21/T22), and git run by argv with the
//! token as a header scoped to the repository's host, never in argv, a URL or a file (T20).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::steps::run_logged;
use wisehosting_proto::job::DeploySpec;

use wisehosting_proto::job::Fault;

use super::error::{CommandError, DeployError};
use super::{Pipeline, Reporter, ip_literal};

/// True for addresses on the public internet: not loopback, private, link-local, CGNAT,
/// benchmarking, 6to4 relay, multicast, documentation or reserved, and no IPv6 form that
/// carries or reaches an IPv4 address (mapped `::ffff:0:0/96`, compatible `::/96`, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32`).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[..6] == [0; 6]
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && (s[1] == 0 || s[1] == 0x0db8)))
        }
    }
}

/// How long a clone or fetch may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);

impl Pipeline {
    fn git(&self, home: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", home)
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_CONFIG_PARAMETERS")
            .env_remove("GIT_CONFIG_COUNT");
        // No proxy: git connects to the address the worker checked, itself.
        for var in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
            cmd.env_remove(var);
        }
        // The configured authorities, else the system's. (The environment, not `-c
        // http.sslCAInfo`: Debian's git with GnuTLS ignores the latter.)
        match &self.settings.git_ca_file {
            Some(ca) => cmd.env("GIT_SSL_CAINFO", ca),
            None => cmd.env_remove("GIT_SSL_CAINFO"),
        };
        cmd.env_remove("GIT_SSL_NO_VERIFY");
        cmd
    }

    /// Checks where a repository may be fetched from, before git connects; for an `https://`
    /// repository, the checked address git must then use (see [`git_network_config`]).
    async fn check_repo(&self, url: &str) -> Result<Option<Pin>, DeployError> {
        if url.starts_with("https://") {
            return check_https_repository(url, self.settings.dns_resolver).await.map(Some);
        }
        if url.starts_with("file:///") && self.settings.allow_local_repos {
            return Ok(None);
        }
        Err(DeployError::user(
            "this worker only fetches https:// repositories (file:// in single-machine mode)",
        ))
    }

    pub(super) async fn clone(
        &self,
        work: &Path,
        src: &Path,
        payload: &DeploySpec,
        reporter: &Reporter,
    ) -> Result<String, DeployError> {
        let repo = payload.repo_url.as_str();
        let pin = self.check_repo(repo).await?;
        let protocols = git_network_config(pin.as_ref(), self.settings.allow_local_repos);
        // A linked account's OAuth token goes under its provider's user name; a token of the
        // app's own as GitHub takes it.
        let user = payload.git_provider.map_or("x-access-token", |p| p.clone_username());
        let auth = payload.git_token.as_ref().and_then(|t| git_auth_env(repo, user, t.expose()));
        let mut clone = self.git(work);
        clone.envs(auth.iter().flatten().map(|(k, v)| (k, v)));
        clone.args(&protocols).args(["clone", "--depth", "1", "--no-tags", "--single-branch", "--branch"]);
        clone.arg(payload.branch.as_str()).arg("--").arg(repo).arg(src);
        // A clone that fails is the repository's (unreachable, no such branch, no access).
        run_logged(clone, reporter, "git clone", GIT_TIMEOUT).await.map_err(|e| e.blame(Fault::User))?;
        if let Some(commit) = &payload.commit {
            let mut fetch = self.git(work);
            fetch.envs(auth.iter().flatten().map(|(k, v)| (k, v)));
            fetch
                .args(&protocols)
                .arg("-C")
                .arg(src)
                .args(["fetch", "--depth", "1", "origin", "--"])
                .arg(commit.as_str());
            run_logged(fetch, reporter, "git fetch of the commit", GIT_TIMEOUT)
                .await
                .map_err(|e| e.blame(Fault::User))?;
            let mut checkout = self.git(work);
            checkout.arg("-C").arg(src).args(["checkout", "--detach", "FETCH_HEAD"]);
            run_logged(checkout, reporter, "git checkout", GIT_TIMEOUT)
                .await
                .map_err(|e| e.blame(Fault::User))?;
        }
        let mut head = self.git(work);
        head.arg("-C").arg(src).args(["rev-parse", "HEAD"]);
        crate::runtime::command::run(head, "git rev-parse").await.map_err(CommandError::platform)
    }
}

/// The address an `https://` repository's host was checked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub host: String,
    pub port: u16,
    pub ip: IpAddr,
}

/// `host[:port]` or `[v6][:port]` → (host, port); 443 by default.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 443,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 443)),
    }
    .filter(|(host, _)| !host.is_empty())
}

/// A resolver asking `server` (or, with none, the system's servers of `/etc/resolv.conf`),
/// never the hosts file, with no cache; `tune` sets the rest of its options. The worker's
/// repository check and the control plane's lookups (custom-domain TXT records, the SSRF
/// guard) are all built here.
pub fn resolver(
    server: Option<std::net::SocketAddr>,
    tune: impl FnOnce(&mut hickory_resolver::config::ResolverOpts),
) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
    let mut builder = match server {
        Some(server) => {
            let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut name_server.connections {
                connection.port = server.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?,
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    tune(options);
    builder.build().map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// The address git is pinned to for an `https://` repository: its host resolved once
/// (through `dns_resolver`, or the system's), every address public, or an error naming why.
pub async fn check_https_repository(
    url: &str,
    dns_resolver: Option<std::net::SocketAddr>,
) -> Result<Pin, DeployError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| DeployError::user("the repository URL is not https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(DeployError::user("the repository URL has no plain host"));
    }
    let (host, port) = split_authority(authority)
        .ok_or_else(|| DeployError::user("the repository URL has a malformed host or port"))?;
    let addrs = resolve(&host, port, dns_resolver).await?;
    if addrs.is_empty() || addrs.iter().any(|ip| !is_public_ip(*ip)) {
        return Err(DeployError::user(format!(
            "{host} resolves to a private or local address; repositories must be on the public internet"
        )));
    }
    Ok(Pin { host, port, ip: addrs[0] })
}

/// Every address `host` has: an IP literal as is; a name through `server` (A and AAAA, no
/// cache, no hosts file) or, with none configured, the system's resolver.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    server: Option<std::net::SocketAddr>,
) -> Result<Vec<IpAddr>, DeployError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let Some(server) = server else {
        return tokio::net::lookup_host((host, port))
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| DeployError::user(format!("cannot resolve {host}: {e}")));
    };
    let resolver = crate::deploy::resolver(Some(server), |options| {
        options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = Duration::from_secs(5);
    })
    .map_err(|e| DeployError::platform(format!("cannot set up the DNS resolver {server}: {e}")))?;
    let found = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| DeployError::user(format!("cannot resolve {host}: {e}")))?;
    Ok(found.iter().collect())
}

/// git's `-c` options for fetching: only `https://` (and `file://` where allowed); for an
/// `https://` repository, the checked address pinned (`http.curloptResolve`, so a DNS answer
/// that changes between the check and git's own lookup — rebinding — cannot send git to a
/// private address) and redirects refused (they could lead to another host).
fn git_network_config(pin: Option<&Pin>, allow_file: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"].map(String::from).into();
    if allow_file {
        args.extend(["-c".into(), "protocol.file.allow=always".into()]);
    }
    if let Some(pin) = pin {
        args.extend([
            "-c".into(),
            format!("http.curloptResolve={}:{}:{}", pin.host, pin.port, ip_literal(pin.ip)),
            "-c".into(),
            "http.followRedirects=false".into(),
        ]);
    }
    args
}

/// The environment that gives git a repository token: an `Authorization` header scoped to
/// the repository's own `https://` host (git's `GIT_CONFIG_*` variables), so the token is in
/// neither argv nor a URL nor a file, and is not sent to another host. `None` for other URLs.
fn git_auth_env(repo_url: &str, user: &str, token: &str) -> Option<[(String, String); 3]> {
    let host =
        repo_url.strip_prefix("https://")?.split('/').next().filter(|h| !h.is_empty() && !h.contains('@'))?;
    Some(auth_header_env(&format!("https://{host}/"), user, token))
}

/// `http.<base>.extraHeader` with basic auth for `<user>:<token>`: `x-access-token` for
/// GitHub (and the form GitLab, Gitea/Codeberg and Bitbucket access tokens accept), or the
/// user name a provider wants with its OAuth tokens.
fn auth_header_env(base: &str, user: &str, token: &str) -> [(String, String); 3] {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
    [
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), format!("http.{base}.extraHeader")),
        ("GIT_CONFIG_VALUE_0".into(), format!("Authorization: Basic {basic}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_pinned_to_the_checked_address_and_follows_no_redirect() {
        let pin = Pin { host: "git.example.com".into(), port: 443, ip: "93.184.216.34".parse().expect("ip") };
        let args = git_network_config(Some(&pin), false);
        assert!(
            args.contains(&"http.curloptResolve=git.example.com:443:93.184.216.34".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"http.followRedirects=false".to_string()));
        assert!(!args.iter().any(|a| a.contains("file.allow")));
        let v6 =
            Pin { host: "git.example.com".into(), port: 8443, ip: "2606:4700::1111".parse().expect("ip") };
        assert!(
            git_network_config(Some(&v6), true)
                .contains(&"http.curloptResolve=git.example.com:8443:[2606:4700::1111]".to_string())
        );
        assert!(git_network_config(None, true).contains(&"protocol.file.allow=always".to_string()));
        assert_eq!(split_authority("git.example.com"), Some(("git.example.com".into(), 443)));
        assert_eq!(split_authority("git.example.com:8443"), Some(("git.example.com".into(), 8443)));
        assert_eq!(split_authority("[2606:4700::1111]:444"), Some(("2606:4700::1111".into(), 444)));
        assert_eq!(split_authority("host:notaport"), None);
        assert_eq!(split_authority(":443"), None);
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "fc00::1",
            "fe80::1",
            "224.0.0.1",
            "10.50.0.1",
            "198.18.0.1",
            "198.19.255.254",
            "192.88.99.1",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::7f00:1",
            "::a00:1",
            "64:ff9b:1::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public_ip(private.parse().expect("ip")), "{private}");
        }
        for public in
            ["1.1.1.1", "8.8.8.8", "198.20.0.1", "192.88.98.1", "2606:4700::1111", "2001:4860::8888"]
        {
            assert!(is_public_ip(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn a_repository_token_goes_only_to_the_repositorys_https_host() {
        let env =
            git_auth_env("https://git.example.com/me/app.git", "x-access-token", "tok3n").expect("https");
        assert_eq!(env[1].1, "http.https://git.example.com/.extraHeader");
        assert!(env.iter().all(|(k, _)| !k.contains("tok3n")));
        for url in ["file:///srv/repo", "https://user@host/x", "https:///x", "/srv/repo"] {
            assert!(git_auth_env(url, "oauth2", "t").is_none(), "{url}");
        }
    }

    /// Real git, a loopback HTTP server that records what git sends: the token arrives in the
    /// Authorization header while git's argv holds no trace of it.
    #[test]
    fn git_sends_the_token_as_a_header_and_never_in_argv() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}/", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Authorization: ") {
                    authorization = Some(v.trim().to_string());
                }
            }
            let mut stream = stream;
            let _ =
                stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            authorization
        });
        let token = "ghp_secretTOKEN123";
        let home = tempfile::tempdir().expect("home");
        let mut git = std::process::Command::new("git");
        git.env("HOME", home.path())
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(auth_header_env(&base, "x-access-token", token).iter().map(|(k, v)| (k, v)))
            .args(["ls-remote", "--", &format!("{base}repo.git")]);
        let argv: Vec<String> = git.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(argv.iter().all(|a| !a.contains(token)), "{argv:?}");
        let out = git.output().expect("run git");
        assert!(!out.status.success(), "the stand-in answers 404");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(token), "git's error output holds no token");
        let sent = server.join().expect("server").expect("an Authorization header");
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        assert_eq!(sent, format!("Basic {expected}"));
    }
}
