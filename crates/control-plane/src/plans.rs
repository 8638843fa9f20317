//! The plan registry (SPEC §9): `free` defined in code and every user's default; the config's
//! `plans` list overrides its limits and adds plans of its own. Each user has a plan
//! (`users.plan`); a name the registry does not know counts as `free`.

use serde::{Deserialize, Serialize};

/// One plan and its limits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub name: String,
    pub max_apps: i64,
    pub memory_mb: u32,
    pub cpus: f32,
    pub custom_domains: u32,
    pub deploys_per_day: i64,
}

/// The built-in plan every user starts on.
pub fn free() -> Plan {
    Plan {
        name: "free".into(),
        max_apps: 5,
        memory_mb: 256,
        cpus: 0.5,
        custom_domains: 1,
        deploys_per_day: 100,
    }
}

/// A plan in the config (`plans:`): a name and any limits to set. For `free` the missing ones
/// keep the built-in values; a new plan takes the missing ones from `free`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    pub apps: Option<i64>,
    pub memory_mb: Option<u32>,
    pub cpus: Option<f32>,
    pub custom_domains: Option<u32>,
    pub deploys_per_day: Option<i64>,
}

impl PlanConfig {
    fn over(&self, base: &Plan) -> Plan {
        Plan {
            name: self.name.clone(),
            max_apps: self.apps.unwrap_or(base.max_apps),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            cpus: self.cpus.unwrap_or(base.cpus),
            custom_domains: self.custom_domains.unwrap_or(base.custom_domains),
            deploys_per_day: self.deploys_per_day.unwrap_or(base.deploys_per_day),
        }
    }
}

/// A plan as `GET /api/plans` and `/api/me` show it (SPEC §14.1).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PlanView {
    pub name: String,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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
            name: self.name.clone(),
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

/// Every plan this control plane offers, `free` first.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    plans: Vec<Plan>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { plans: vec![free()] }
    }
}

impl Registry {
    /// The registry the config describes, or what is wrong with it (the key named).
    pub fn from_config(configured: &[PlanConfig]) -> Result<Registry, String> {
        let mut free = free();
        if let Some(over) = configured.iter().find(|p| p.name == "free") {
            free = over.over(&free);
        }
        let mut plans = vec![free.clone()];
        for (i, config) in configured.iter().enumerate() {
            let name = &config.name;
            let plain = !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !plain {
                return Err(format!(
                    "plans[{i}].name: {name:?} is not a plan name; use 1 to 40 of a-z, 0-9 and `-`"
                ));
            }
            if configured[..i].iter().any(|p| &p.name == name) {
                return Err(format!("plans[{i}].name: {name:?} is listed twice; keep one"));
            }
            if name != "free" {
                plans.push(config.over(&free));
            }
        }
        for plan in &plans {
            let name = &plan.name;
            if plan.max_apps < 0 || plan.deploys_per_day < 0 {
                return Err(format!("plans ({name}): apps and deploys_per_day must be 0 or more"));
            }
            wisehosting_proto::job::Limits::new(plan.memory_mb, plan.cpus)
                .map_err(|e| format!("plans ({name}): {e}"))?;
        }
        Ok(Registry { plans })
    }

    /// The plan of that name, or `free` for a name this registry does not know.
    pub fn get(&self, name: &str) -> &Plan {
        self.plans.iter().find(|p| p.name == name).unwrap_or(&self.plans[0])
    }

    pub fn all(&self) -> &[Plan] {
        &self.plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_overrides_free_and_adds_plans_that_start_from_it() {
        let configured = [
            PlanConfig { name: "pro".into(), apps: Some(50), memory_mb: Some(1024), ..PlanConfig::default() },
            PlanConfig { name: "free".into(), apps: Some(2), ..PlanConfig::default() },
        ];
        let registry = Registry::from_config(&configured).expect("valid");
        let names: Vec<&str> = registry.all().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["free", "pro"]);
        assert_eq!(registry.get("free").max_apps, 2);
        assert_eq!(registry.get("free").memory_mb, 256, "unset limits keep the built-in values");
        let pro = registry.get("pro");
        assert_eq!((pro.max_apps, pro.memory_mb, pro.cpus), (50, 1024, 0.5));
        assert_eq!(registry.get("gold").name, "free", "an unknown plan counts as free");
    }

    #[test]
    fn a_bad_plan_is_refused_with_its_key_named() {
        for (configured, needle) in [
            (vec![PlanConfig { name: "Pro Plan".into(), ..PlanConfig::default() }], "plans[0].name"),
            (
                vec![
                    PlanConfig { name: "pro".into(), ..PlanConfig::default() },
                    PlanConfig { name: "pro".into(), ..PlanConfig::default() },
                ],
                "listed twice",
            ),
            (vec![PlanConfig { name: "pro".into(), memory_mb: Some(1), ..PlanConfig::default() }], "memory"),
            (vec![PlanConfig { name: "free".into(), apps: Some(-1), ..PlanConfig::default() }], "apps"),
        ] {
            let err = Registry::from_config(&configured).expect_err(needle);
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn plans_read_from_yaml_with_unknown_keys_refused() {
        let text = "plans:\n  - name: pro\n    apps: 20\n    cpus: 2\n";
        let config = crate::Config::from_yaml_str(text, "test").expect("reads");
        assert_eq!(config.plans[0].name, "pro");
        assert_eq!(config.plans[0].apps, Some(20));
        let err =
            crate::Config::from_yaml_str("plans:\n  - name: pro\n    ram: 1\n", "test").expect_err("refused");
        assert!(err.to_string().contains("ram"), "{err}");
        let err = crate::Config::from_yaml_str("plans:\n  - name: Pro\n", "test").expect_err("refused");
        assert!(err.to_string().contains("plans[0].name"), "{err}");
    }
}
