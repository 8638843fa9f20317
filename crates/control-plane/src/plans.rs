//! The plan registry (SPEC §9): defined in code; `free` is every user's default.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub name: &'static str,
    pub max_apps: i64,
    pub memory_mb: u32,
    pub cpus: f32,
    pub custom_domains: u32,
    pub deploys_per_day: i64,
}

pub const FREE: Plan =
    Plan { name: "free", max_apps: 5, memory_mb: 256, cpus: 0.5, custom_domains: 1, deploys_per_day: 100 };

/// Every plan this build knows (config overrides and extra plans are issue 12's).
pub const ALL: [&Plan; 1] = [&FREE];

/// A plan as `GET /api/plans` and `/api/me` show it (SPEC §14.1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanView {
    pub name: &'static str,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Limits {
    pub apps: i64,
    pub memory_mb: u32,
    pub cpus: f32,
    pub custom_domains: u32,
    pub deploys_per_day: i64,
}

impl Plan {
    pub fn view(&self) -> PlanView {
        PlanView {
            name: self.name,
            limits: Limits {
                apps: self.max_apps,
                memory_mb: self.memory_mb,
                cpus: self.cpus,
                custom_domains: self.custom_domains,
                deploys_per_day: self.deploys_per_day,
            },
        }
    }
}

/// The plan of that name, or `free` for a name this build does not know.
pub fn plan(name: &str) -> &'static Plan {
    ALL.iter().copied().find(|p| p.name == name).unwrap_or(&FREE)
}
