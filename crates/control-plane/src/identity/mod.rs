//! Who is calling: sign-in with an OpenID provider ([`oidc`]), second factors ([`totp`]), and
//! what an API token may do ([`scope`]). HTTP lives in `http::auth` and `http::account`; rows in
//! `store`.

pub mod oidc;
pub mod scope;
pub mod totp;
