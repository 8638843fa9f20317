//! API token scopes (SPEC §14.1) and the one table of what each route needs.
//!
//! Every authenticated handler gets its caller through `CurrentUser`, which asks [`required`]
//! for the matched route; no handler checks scopes by hand, and a new route is covered the day
//! it is added (a new `GET` needs `read`, anything else `write`, until listed here).

use axum::http::Method;

/// What a token may do. `deploy` includes `read`; `write` includes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Deploy,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "deploy" => Some(Scope::Deploy),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A token with at least this scope, or a session.
    Scope(Scope),
    /// A browser session: tokens never manage tokens, sessions or 2FA.
    Session,
}

/// Routes (axum's matched path) that only a browser session may use.
const SESSION_ONLY: &[&str] =
    &["/api/account/tokens", "/api/account/sessions", "/api/account/totp", "/api/auth/"];

/// `POST` routes a `deploy` token may call.
const DEPLOY_ROUTES: &[&str] =
    &["/api/deploy", "/api/apps/{id}/deployments", "/api/apps/{id}/restart", "/api/apps/{id}/rollback"];

/// What `method` on the route `route` (as matched, with `{id}` placeholders) needs.
pub fn required(method: &Method, route: &str) -> Needs {
    if SESSION_ONLY.iter().any(|prefix| route.starts_with(prefix)) {
        return Needs::Session;
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return Needs::Scope(Scope::Read);
    }
    if *method == Method::POST && DEPLOY_ROUTES.contains(&route) {
        return Needs::Scope(Scope::Deploy);
    }
    Needs::Scope(Scope::Write)
}

/// True when a token holding `scopes` may do what `needs` asks.
pub fn allows(scopes: &[Scope], needs: Needs) -> bool {
    match needs {
        Needs::Session => false,
        Needs::Scope(wanted) => scopes.iter().any(|held| *held >= wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tokens_only_read_deploy_tokens_also_deploy_write_tokens_do_every_app_action() {
        let get = required(&Method::GET, "/api/apps/{id}");
        let deploy = required(&Method::POST, "/api/apps/{id}/deployments");
        let restart = required(&Method::POST, "/api/apps/{id}/restart");
        let env = required(&Method::PUT, "/api/apps/{id}/env");
        let delete = required(&Method::DELETE, "/api/apps/{id}");
        for (scopes, expect) in [
            (vec![Scope::Read], [true, false, false, false, false]),
            (vec![Scope::Deploy], [true, true, true, false, false]),
            (vec![Scope::Write], [true, true, true, true, true]),
            (vec![Scope::Read, Scope::Deploy], [true, true, true, false, false]),
        ] {
            let got = [get, deploy, restart, env, delete].map(|needs| allows(&scopes, needs));
            assert_eq!(got, expect, "{scopes:?}");
        }
    }

    #[test]
    fn no_token_manages_tokens_sessions_2fa_or_sign_in() {
        for (method, route) in [
            (Method::GET, "/api/account/tokens"),
            (Method::POST, "/api/account/tokens"),
            (Method::DELETE, "/api/account/tokens/{id}"),
            (Method::GET, "/api/account/sessions"),
            (Method::POST, "/api/account/sessions/revoke-others"),
            (Method::POST, "/api/account/totp/enroll"),
            (Method::POST, "/api/auth/logout"),
        ] {
            let needs = required(&method, route);
            assert_eq!(needs, Needs::Session, "{method} {route}");
            assert!(!allows(&[Scope::Write], needs), "{method} {route}");
        }
        assert!(allows(&[Scope::Read], required(&Method::GET, "/api/account/audit")));
    }

    #[test]
    fn scopes_read_back_from_their_names() {
        for scope in [Scope::Read, Scope::Deploy, Scope::Write] {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("admin"), None);
    }
}
