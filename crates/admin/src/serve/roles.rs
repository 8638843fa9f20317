//! The one place roles are checked. A handler declares what it needs in its signature —
//! `Allowed<Operate>` — and the extractor finds the signed-in admin, reads their live grants
//! at this instant (an expired grant grants nothing from that second on, in the same
//! session) and answers 403 `forbidden` unless one of them carries the permission. No handler
//! looks at roles itself.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use wisehosting_control_plane::domain::AdminRole;
use wisehosting_control_plane::http::ApiError;

use super::Console;
use super::auth::Admin;

/// What a request may need; which roles carry it is [`Need::granted_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The overview and the live worker map.
    Dashboards,
    /// Tenant data and operations: apps across tenants, their logs and figures, the podman
    /// queries (and later pausing an app, unlocking a stuck deploy).
    Operate,
    /// The users list.
    Users,
    /// Users' plans.
    Plans,
    /// Admin accounts and their grants.
    Admins,
    /// The admin audit trail.
    Audit,
}

impl Need {
    /// SPEC §10: `super_admin` everything; `support` tenant data and operations; `billing`
    /// users and plans; `read_only` dashboards only.
    pub fn granted_by(self, role: AdminRole) -> bool {
        use AdminRole::*;
        match self {
            Need::Dashboards => true,
            Need::Operate => matches!(role, SuperAdmin | Support),
            Need::Users => matches!(role, SuperAdmin | Support | Billing),
            Need::Plans => matches!(role, SuperAdmin | Billing),
            Need::Admins | Need::Audit => role == SuperAdmin,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Need::Dashboards => "the dashboards",
            Need::Operate => "tenant apps and workers",
            Need::Users => "the users list",
            Need::Plans => "users' plans",
            Need::Admins => "admin accounts and grants",
            Need::Audit => "the admin audit trail",
        }
    }
}

/// A permission as a type, for [`Allowed`].
pub trait Permission: Send + Sync + 'static {
    const NEED: Need;
}

macro_rules! permissions {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Debug)]
        pub struct $name;
        impl Permission for $name {
            const NEED: Need = Need::$name;
        }
    )*};
}
permissions!(Dashboards, Operate, Users, Plans, Admins, Audit);

/// The signed-in admin, allowed `P` now. Only the extractor makes one.
#[derive(Debug)]
pub struct Allowed<P> {
    pub admin: Admin,
    need: PhantomData<P>,
}

impl<P: Permission> FromRequestParts<Console> for Allowed<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, ApiError> {
        let admin = Admin::from_request_parts(parts, console).await?;
        if admin.roles.iter().any(|r| P::NEED.granted_by(*r)) {
            Ok(Allowed { admin, need: PhantomData })
        } else {
            Err(ApiError::Forbidden(format!(
                "your roles ({}) do not give access to {}; ask a super_admin for a grant",
                if admin.roles.is_empty() {
                    "none live".to_string()
                } else {
                    admin.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                },
                P::NEED.name()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_gets_the_dashboards_only_and_only_super_admin_manages_admins() {
        let all = [Need::Dashboards, Need::Operate, Need::Users, Need::Plans, Need::Admins, Need::Audit];
        let granted = |role| all.iter().filter(|n| n.granted_by(role)).copied().collect::<Vec<_>>();
        assert_eq!(granted(AdminRole::ReadOnly), [Need::Dashboards]);
        assert_eq!(granted(AdminRole::Support), [Need::Dashboards, Need::Operate, Need::Users]);
        assert_eq!(granted(AdminRole::Billing), [Need::Dashboards, Need::Users, Need::Plans]);
        assert_eq!(granted(AdminRole::SuperAdmin), all);
    }
}
