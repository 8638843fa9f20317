//! Linked git provider accounts (SPEC §14.8): link (OAuth, `state` bound to the session that
//! began it), callback, list, unlink (revoking where the provider allows), and the linked
//! account's repositories and branches for the new-app form.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wisehosting_proto::job::GitProvider;

use super::auth::redirect;
use super::extract::{CurrentUser, audit_user};
use super::{ApiError, ApiPath, ApiQuery};
use crate::gitlink::{LinkError, Repo};
use crate::ratelimit::client_key;
use crate::state::AppState;
use crate::store::audit::AuditAction;
use crate::store::gitlinks::{self, LinkView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_links))
        .routes(routes!(link))
        .routes(routes!(callback))
        .routes(routes!(unlink))
        .routes(routes!(list_repos))
        .routes(routes!(list_branches))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ProviderPath {
    /// `github`, `gitlab`, `bitbucket` or `codeberg`.
    provider: String,
}

impl ProviderPath {
    fn parse(&self) -> Result<GitProvider, ApiError> {
        GitProvider::parse(&self.provider).map_err(|_| {
            ApiError::NotFound(format!(
                "no git provider {:?}; choose github, gitlab, bitbucket or codeberg",
                self.provider.chars().take(40).collect::<String>()
            ))
        })
    }
}

/// The user's linked accounts.
#[utoipa::path(get, path = "/api/git/providers", tag = "git",
    responses((status = 200, description = "Linked accounts, by provider", body = [LinkView])))]
async fn list_links(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<LinkView>>, ApiError> {
    Ok(Json(gitlinks::list(&state.db, user.id).await?))
}

/// Begins linking: 302 to the provider's authorize page with `client_id`, `redirect_uri`,
/// the scopes needed and a `state` bound to this session (10 minutes, used once).
#[utoipa::path(get, path = "/api/git/{provider}/link", tag = "git", params(ProviderPath),
    responses((status = 302, description = "To the provider's authorize page")))]
async fn link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    ApiPath(path): ApiPath<ProviderPath>,
) -> Result<Response, ApiError> {
    let (provider, session, client) = linking(&state, peer, &user, &path)?;
    let link_state = wisehosting_crypto::random_token("");
    gitlinks::begin(&state.db, &link_state, session, provider).await?;
    Ok(redirect(&client.authorize_url(&link_state), Vec::new()))
}

/// What both ends of a link check first: the sign-in rate limit per address, the provider,
/// a session (API tokens link nothing) and the provider being configured here.
fn linking<'a>(
    state: &'a AppState,
    peer: SocketAddr,
    user: &CurrentUser,
    path: &ProviderPath,
) -> Result<(GitProvider, i64, &'a crate::gitlink::ProviderClient), ApiError> {
    state.sign_in_limiter.check(client_key(peer.ip()))?;
    let provider = path.parse()?;
    let session = user.session_id()?;
    Ok((provider, session, state.git_links.get(provider)?))
}

/// A link that ended without one: audited with why, 302 to `/account?git_error=<code>`.
async fn link_failed(
    state: &AppState,
    user: &CurrentUser,
    provider: GitProvider,
    code: &str,
    why: &str,
) -> Result<Response, ApiError> {
    let detail = json!({ "provider": provider.as_str(), "error": code, "why": why });
    audit_user(&state.db, user, AuditAction::GitLinkFailed, "user", user.id, detail).await?;
    Ok(redirect(&format!("/account?git_error={code}"), Vec::new()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// The provider's refusal (`access_denied` when the person said no).
    error: Option<String>,
}

/// Why a link ended without one; the code is `/account?git_error=<code>`.
fn failure_code(e: &LinkError) -> &'static str {
    match e {
        LinkError::Refused { .. } => "code_rejected",
        LinkError::Rejected(_) => "token_rejected",
        LinkError::Unavailable { .. } => "provider_unavailable",
        LinkError::NotConfigured(_) | LinkError::NotLinked(_) | LinkError::Store(_) => "server_error",
    }
}

/// Ends linking: the code exchanged, the token sealed, 302 to `/account`. A callback whose
/// `state` this session did not begin (another user's, a replay, none) links nothing and goes
/// to `/account?git_error=bad_state`.
#[utoipa::path(get, path = "/api/git/{provider}/callback", tag = "git", params(ProviderPath, CallbackQuery),
    responses((status = 302, description = "To `/account`, or `/account?git_error=<code>`")))]
async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let (provider, session, client) = linking(&state, peer, &user, &path)?;
    if let Some(error) = q.error {
        let why: String = error.chars().take(100).collect();
        return link_failed(&state, &user, provider, "provider_error", &why).await;
    }
    let (Some(code), Some(link_state)) = (q.code, q.state) else {
        return link_failed(&state, &user, provider, "bad_request", "the callback lacks its code or state")
            .await;
    };
    if !gitlinks::take_state(&state.db, &link_state, session, provider).await? {
        let why = "a state this session did not begin, used, or expired";
        return link_failed(&state, &user, provider, "bad_state", why).await;
    }
    let linked = async {
        let tokens = client.exchange(&code).await?;
        let login = client.login(&tokens.access).await?;
        Ok::<_, LinkError>((tokens, login))
    }
    .await;
    let (tokens, login) = match linked {
        Ok(linked) => linked,
        Err(e) => return link_failed(&state, &user, provider, failure_code(&e), &e.to_string()).await,
    };
    let mut tx = state.db.begin().await?;
    gitlinks::upsert(&mut *tx, &state.sealer, user.id, provider, &login, &tokens).await?;
    let detail = json!({ "provider": provider.as_str(), "login": login });
    audit_user(&mut *tx, &user, AuditAction::GitLinked, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(redirect("/account", Vec::new()))
}

/// What unlinking did.
#[derive(Debug, Serialize, ToSchema)]
struct Unlinked {
    /// Whether the provider revoked the token (GitHub and GitLab do; on Bitbucket and
    /// Codeberg, remove the app's access in the provider's settings).
    revoked: bool,
}

/// Unlinks the account and revokes its token where the provider allows. Apps that clone with
/// the link fail their next deploy until it is linked again (or given a token of their own).
#[utoipa::path(delete, path = "/api/git/{provider}", tag = "git", params(ProviderPath),
    responses((status = 200, description = "Unlinked", body = Unlinked)))]
async fn unlink(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<ProviderPath>,
) -> Result<Json<Unlinked>, ApiError> {
    let provider = path.parse()?;
    let mut tx = state.db.begin().await?;
    let link = gitlinks::delete(&mut *tx, &state.sealer, user.id, provider)
        .await?
        .ok_or(LinkError::NotLinked(provider))?;
    let revoked = match state.git_links.get(provider) {
        Ok(client) => match client.revoke(&link.tokens).await {
            Ok(revoked) => revoked,
            Err(e) => {
                tracing::warn!(user_id = user.id, %provider, error = %e, "could not revoke an unlinked token");
                false
            }
        },
        Err(_) => false,
    };
    let detail = json!({ "provider": provider.as_str(), "login": link.login, "revoked": revoked });
    audit_user(&mut *tx, &user, AuditAction::GitUnlinked, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(Json(Unlinked { revoked }))
}

/// The repositories the linked account can reach (every page the provider has).
#[utoipa::path(get, path = "/api/git/{provider}/repos", tag = "git", params(ProviderPath),
    responses((status = 200, description = "Repositories", body = [Repo])))]
async fn list_repos(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<ProviderPath>,
) -> Result<Json<Vec<Repo>>, ApiError> {
    let provider = path.parse()?;
    let token = state.git_links.token(&state.db, &state.sealer, user.id, provider).await?;
    Ok(Json(state.git_links.get(provider)?.repos(&token).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct RepoPath {
    provider: String,
    owner: String,
    name: String,
}

/// A branch of a repository.
#[derive(Debug, Serialize, ToSchema)]
struct BranchName {
    name: String,
}

/// `owner` or `name` of a repository: what providers allow in a path segment.
pub(crate) fn repo_segment(value: &str) -> Result<&str, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value != "."
        && value != ".."
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(value)
    } else {
        Err(ApiError::invalid("repository", "owner and name are letters, digits, `.`, `_` and `-`"))
    }
}

/// The branches of one of the linked account's repositories (a GitLab subgroup's as
/// `group%2Fsub` in `owner`).
#[utoipa::path(get, path = "/api/git/{provider}/repos/{owner}/{name}/branches", tag = "git", params(RepoPath),
    responses((status = 200, description = "Branches", body = [BranchName])))]
async fn list_branches(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<RepoPath>,
) -> Result<Json<Vec<BranchName>>, ApiError> {
    let provider = ProviderPath { provider: path.provider }.parse()?;
    // GitLab nests groups: `group/sub` as the owner, its `/` sent as `%2F`.
    let nested = provider == GitProvider::Gitlab && path.owner.contains('/');
    let owner_parts: Vec<&str> = if nested { path.owner.split('/').collect() } else { vec![&path.owner] };
    for part in &owner_parts {
        repo_segment(part)?;
    }
    let full_name = format!("{}/{}", owner_parts.join("/"), repo_segment(&path.name)?);
    let token = state.git_links.token(&state.db, &state.sealer, user.id, provider).await?;
    let branches = state.git_links.get(provider)?.branches(&token, &full_name).await?;
    Ok(Json(branches.into_iter().map(|name| BranchName { name }).collect()))
}
