//! Placement (SPEC §5): which online worker takes an app that has none, or whose worker is
//! gone. Only workers in the app's zone (its own, else the one its hostname already carries)
//! count; among them, those with room for the plan's memory and CPU — capacity minus what the
//! apps placed there reserve, and memory the last heartbeat says is free — and of those the
//! least loaded. Pure: the dispatcher feeds it the database's view, so either control plane of
//! a pair decides alike.

use crate::plans::{Plan, Registry};
use crate::store::workers::CandidateRow;

/// CPU is shared, not reserved outright: a worker takes plans' CPUs up to this many times its
/// cores (apps rarely use their whole share at once). Memory is never overcommitted.
pub const CPU_OVERCOMMIT: f64 = 4.0;

/// An online worker with what it has left.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: i64,
    pub zone: Option<String>,
    pub free_memory_mb: f64,
    pub free_cpus: f64,
    /// CPU share in use plus memory share in use, from the last heartbeat (0 to 2).
    pub load: f64,
}

impl Candidate {
    pub fn from_row(row: &CandidateRow, plans: &Registry) -> Candidate {
        let (reserved_mb, reserved_cpus) = row
            .plans
            .iter()
            .map(|p| plans.get(p))
            .fold((0.0, 0.0), |(m, c), p| (m + f64::from(p.memory_mb), c + f64::from(p.cpus)));
        let cores = f64::from(row.capacity_cpus.filter(|c| *c > 0).unwrap_or(1));
        let total_mb = row.capacity_memory_mb.or(row.mem_total_mb).unwrap_or(0) as f64;
        let mut free_memory_mb = total_mb - reserved_mb;
        let mut load = 0.0;
        if let (Some(used), Some(total)) = (row.mem_used_mb, row.mem_total_mb.filter(|t| *t > 0)) {
            free_memory_mb = free_memory_mb.min((total - used) as f64);
            load += used as f64 / total as f64;
        }
        if let Some(cpu) = row.cpu_pct {
            load += (cpu / 100.0 / cores).clamp(0.0, 1.0);
        }
        Candidate {
            id: row.id,
            zone: row.zone.clone(),
            free_memory_mb,
            free_cpus: cores * CPU_OVERCOMMIT - reserved_cpus,
            load,
        }
    }

    fn fits(&self, plan: &Plan) -> bool {
        self.free_memory_mb >= f64::from(plan.memory_mb) && self.free_cpus >= f64::from(plan.cpus)
    }
}

/// Where an app goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    On(i64),
    /// No worker of the zone is online: the job waits for one.
    NoWorkerOnline,
    /// Workers of the zone are online and none has room: the deploy fails with this reason.
    NoRoom(String),
}

/// Chooses a worker for an app of `plan` in `zone` (any zone when `None`).
pub fn place(zone: Option<&str>, plan: &Plan, candidates: &[Candidate]) -> Placement {
    let in_zone: Vec<&Candidate> =
        candidates.iter().filter(|c| zone.is_none_or(|z| c.zone.as_deref() == Some(z))).collect();
    if in_zone.is_empty() {
        return Placement::NoWorkerOnline;
    }
    let best = in_zone.iter().filter(|c| c.fits(plan)).min_by(|a, b| {
        a.load.total_cmp(&b.load).then(b.free_memory_mb.total_cmp(&a.free_memory_mb)).then(a.id.cmp(&b.id))
    });
    match best {
        Some(c) => Placement::On(c.id),
        None => {
            let most = in_zone.iter().map(|c| c.free_memory_mb.max(0.0)).fold(0.0, f64::max);
            let cpus = in_zone.iter().map(|c| c.free_cpus.max(0.0)).fold(0.0, f64::max);
            let where_ = zone.map_or(String::new(), |z| format!(" in zone {z}"));
            Placement::NoRoom(format!(
                "no worker can take this app: the {} plan needs {} MB of memory and {} CPU, and the {} online worker(s){where_} have at most {:.0} MB and {:.2} CPU free; add a worker, or stop or delete apps to make room",
                plan.name,
                plan.memory_mb,
                plan.cpus,
                in_zone.len(),
                most,
                cpus
            ))
        }
    }
}

/// Takes what `plan` reserves off worker `id`, for the next choice of the same batch.
pub fn reserve(candidates: &mut [Candidate], id: i64, plan: &Plan) {
    if let Some(c) = candidates.iter_mut().find(|c| c.id == id) {
        c.free_memory_mb -= f64::from(plan.memory_mb);
        c.free_cpus -= f64::from(plan.cpus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, zone: Option<&str>, plans: &[&str]) -> CandidateRow {
        CandidateRow {
            id,
            zone: zone.map(str::to_string),
            capacity_cpus: Some(2),
            capacity_memory_mb: Some(1024),
            cpu_pct: Some(10.0),
            mem_used_mb: Some(200),
            mem_total_mb: Some(1024),
            plans: plans.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn free() -> Plan {
        crate::plans::free()
    }

    #[test]
    fn the_least_loaded_worker_with_room_in_the_zone_is_chosen() {
        let plans = Registry::default();
        let mut busy = row(1, Some("eu"), &[]);
        busy.cpu_pct = Some(150.0);
        let calm = row(2, Some("eu"), &[]);
        let elsewhere = row(3, Some("us"), &[]);
        let candidates: Vec<Candidate> =
            [busy, calm, elsewhere].iter().map(|r| Candidate::from_row(r, &plans)).collect();
        assert_eq!(place(Some("eu"), &free(), &candidates), Placement::On(2));
        assert_eq!(place(Some("us"), &free(), &candidates), Placement::On(3));
        assert_eq!(place(Some("ap"), &free(), &candidates), Placement::NoWorkerOnline);
        assert_eq!(place(None, &free(), &[]), Placement::NoWorkerOnline);
    }

    #[test]
    fn apps_placed_reserve_their_plans_memory_and_a_full_zone_names_the_problem() {
        let plans = Registry::default();
        // 1024 MB: three free apps (768 MB) leave 256, room for one more and no other.
        let mut candidates = vec![Candidate::from_row(&row(1, None, &["free", "free", "free"]), &plans)];
        assert_eq!(place(None, &free(), &candidates), Placement::On(1));
        reserve(&mut candidates, 1, &free());
        let Placement::NoRoom(reason) = place(None, &free(), &candidates) else {
            unreachable!("a full worker takes nothing");
        };
        assert!(reason.starts_with("no worker can take this app"), "{reason}");
        assert!(reason.contains("256 MB") && reason.contains("add a worker"), "{reason}");
    }

    #[test]
    fn memory_the_heartbeat_says_is_used_counts_even_without_reservations() {
        let plans = Registry::default();
        let mut full = row(1, None, &[]);
        full.mem_used_mb = Some(900);
        let candidates = vec![Candidate::from_row(&full, &plans)];
        assert!(matches!(place(None, &free(), &candidates), Placement::NoRoom(_)));
    }

    #[test]
    fn cpu_is_shared_up_to_four_times_the_cores() {
        let plans = Registry::default();
        let mut big = row(1, None, &[]);
        big.capacity_memory_mb = Some(1 << 20);
        big.mem_total_mb = Some(1 << 20);
        // 2 cores × 4 = 8 CPUs of plans: 16 free apps at 0.5, not 17.
        let placed = vec!["free"; 15];
        let candidates = vec![Candidate::from_row(
            &CandidateRow { plans: placed.iter().map(|p| p.to_string()).collect(), ..big.clone() },
            &plans,
        )];
        assert_eq!(place(None, &free(), &candidates), Placement::On(1));
        let placed = vec!["free"; 16];
        let candidates = vec![Candidate::from_row(
            &CandidateRow { plans: placed.iter().map(|p| p.to_string()).collect(), ..big },
            &plans,
        )];
        assert!(matches!(place(None, &free(), &candidates), Placement::NoRoom(_)));
    }
}
