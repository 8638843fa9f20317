//! The alert manager: metric rules evaluated in rounds against the live figures, event kinds
//! raised and cleared where their events happen.
//!
//! A metric rule fires once its value has stayed over the threshold for `sustain_minutes`,
//! and resolves once it has stayed at or under it for as long ([`step`], a pure function of
//! the rule's state, the value and the time, so it is tested with any clock). The state —
//! since when over, since when under, whether it fired — lives in the rule's row, so a
//! control-plane restart loses nothing; a round writes only the rules whose state moved. An
//! app without live figures (no worker, or none in 45 s) holds its state: the `offline` kind
//! says so instead. At most one alert per (app, kind) is open at a time (a unique index), so
//! a condition that flaps cannot flood anyone; a user's resolve does not make the rule fire
//! again until its condition has cleared and come back. With several control planes, each
//! has live figures only of the workers connected to it, so each moves only those apps'
//! rules; the others hold (no lock is needed, and none would help).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::notify::{self, Channels};
use super::stats::StatsBook;
use crate::domain::AlertKind;
use crate::hub::{Hub, HubEvent};
use crate::store::alerts::{self, Alert, MetricRule, NewAlert, RuleState};

/// What a round decided for one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Fire,
    Resolve,
}

/// One rule's next state given its value now (`None`: no live figures; the state holds).
pub fn step(
    rule: &RuleState,
    threshold: f64,
    sustain: chrono::Duration,
    value: Option<f64>,
    now: DateTime<Utc>,
) -> (RuleState, Option<Verdict>) {
    let Some(value) = value else { return (*rule, None) };
    let mut next = *rule;
    if value > threshold {
        next.under_since = None;
        let since = *next.over_since.get_or_insert(now);
        if !next.firing && now - since >= sustain {
            next.firing = true;
            return (next, Some(Verdict::Fire));
        }
    } else {
        next.over_since = None;
        let since = *next.under_since.get_or_insert(now);
        if next.firing && now - since >= sustain {
            next.firing = false;
            return (next, Some(Verdict::Resolve));
        }
    }
    (next, None)
}

/// A metric rule's value from the live figures of the app's own worker.
pub fn value_of(stats: &StatsBook, rule: &MetricRule, now: DateTime<Utc>) -> Option<f64> {
    let worker = rule.worker_id?;
    let latest = stats.latest(rule.app_id, worker).filter(|l| l.is_live())?;
    match rule.kind {
        AlertKind::Cpu => Some(latest.stat.cpu_pct),
        AlertKind::Memory => latest.mem_pct(),
        AlertKind::Network => Some(latest.net_rx_bps + latest.net_tx_bps),
        AlertKind::Restarts => {
            Some(f64::from(stats.restarts_since(rule.app_id, worker, now - chrono::Duration::hours(1))))
        }
        _ => None,
    }
}

fn describe(rule: &MetricRule, app_name: &str, value: Option<f64>) -> String {
    let v = value.unwrap_or(0.0);
    let t = rule.threshold;
    let span = match rule.sustain_minutes {
        0 => String::new(),
        1 => " for 1 minute".to_string(),
        m => format!(" for {m} minutes"),
    };
    match rule.kind {
        AlertKind::Cpu => format!("{}: CPU at {v:.1}%{span} (over {t}%)", app_name),
        AlertKind::Memory => format!("{}: memory at {v:.1}% of the limit{span} (over {t}%)", app_name),
        AlertKind::Network => format!("{}: network at {v:.0} bytes/s{span} (over {t})", app_name),
        AlertKind::Restarts => format!("{}: {v:.0} restarts in the last hour (over {t})", app_name),
        other => format!("{}: {other}", app_name),
    }
}

/// Figures of one round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub rules: usize,
    pub moved: usize,
    pub fired: usize,
    pub resolved: usize,
}

/// A verdict on `rules[index]`, with the value it was reached at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub index: usize,
    pub verdict: Verdict,
    pub value: Option<f64>,
}

/// What one round decides, without the database: the states that moved and the verdicts.
pub fn decide(
    rules: &[MetricRule],
    value: impl Fn(&MetricRule) -> Option<f64>,
    now: DateTime<Utc>,
) -> (Vec<RuleState>, Vec<Decision>) {
    let mut moved = Vec::new();
    let mut verdicts = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let state = RuleState {
            id: rule.id,
            over_since: rule.over_since,
            under_since: rule.under_since,
            firing: rule.firing,
        };
        let v = value(rule);
        let sustain = chrono::Duration::minutes(i64::from(rule.sustain_minutes));
        let (next, verdict) = step(&state, rule.threshold, sustain, v, now);
        if next != state {
            moved.push(next);
        }
        if let Some(verdict) = verdict {
            verdicts.push(Decision { index: i, verdict, value: v });
        }
    }
    (moved, verdicts)
}

/// Evaluates the metric rules against the hub's live figures.
#[derive(Clone)]
pub struct Evaluator {
    pub db: PgPool,
    pub stats: Arc<StatsBook>,
    pub channels: Channels,
}

impl Evaluator {
    /// One round at `now`: new states and the alerts they raise or resolve, in one
    /// transaction.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Round, sqlx::Error> {
        let rules = alerts::metric_rules(&self.db).await?;
        let (moved, verdicts) = decide(&rules, |r| value_of(&self.stats, r, now), now);
        let mut round = Round { rules: rules.len(), moved: moved.len(), ..Round::default() };
        if moved.is_empty() {
            return Ok(round);
        }
        let mut tx = self.db.begin().await?;
        alerts::save_states(&mut *tx, &moved).await?;
        for Decision { index, verdict, value } in verdicts {
            let rule = &rules[index];
            match verdict {
                Verdict::Fire => {
                    // The name is read only for the few rules that fire, not loaded with all.
                    let name =
                        crate::store::apps::owner_and_name(&mut *tx, rule.app_id).await?.map(|(_, n)| n);
                    let message = describe(rule, name.as_deref().unwrap_or("an app"), value);
                    let new = NewAlert {
                        user_id: rule.user_id,
                        app_id: Some(rule.app_id),
                        kind: rule.kind,
                        message: &message,
                        at: now,
                    };
                    if raise_for(&mut tx, self.channels, &new).await?.is_some() {
                        round.fired += 1;
                    }
                }
                Verdict::Resolve => {
                    if clear(&mut tx, self.channels, rule.app_id, rule.kind, now).await?.is_some() {
                        round.resolved += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(round)
    }

    /// Rounds every `every` until shutdown; a failed round is logged and the next one tries.
    pub fn spawn(self, every: Duration, shutdown: CancellationToken) {
        super::every(every, shutdown, move || {
            let this = self.clone();
            async move {
                match this.round(Utc::now()).await {
                    Ok(r) if r.fired + r.resolved > 0 => {
                        tracing::info!(fired = r.fired, resolved = r.resolved, "alert round")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "alert round failed; the next one tries again"),
                }
            }
        });
    }
}

/// Raises an alert for the user (notifying them) unless one of this kind is open.
pub async fn raise_for(
    tx: &mut PgConnection,
    channels: Channels,
    new: &NewAlert<'_>,
) -> Result<Option<Alert>, sqlx::Error> {
    let alert = alerts::fire(&mut *tx, new).await?;
    if let Some(alert) = &alert {
        tracing::info!(alert_id = alert.id, app_id = new.app_id, kind = %new.kind, "alert fired");
        notify::alert(tx, channels, alert).await?;
    }
    Ok(alert)
}

/// Raises an event kind's alert for an app, if the app has a rule of that kind.
pub async fn raise(
    tx: &mut PgConnection,
    channels: Channels,
    app_id: i64,
    kind: AlertKind,
    message: &str,
    at: DateTime<Utc>,
) -> Result<Option<Alert>, sqlx::Error> {
    let Some((user_id, name)) = alerts::ruled_owner(&mut *tx, app_id, kind).await? else {
        return Ok(None);
    };
    let message = format!("{name}: {message}");
    raise_for(tx, channels, &NewAlert { user_id, app_id: Some(app_id), kind, message: &message, at }).await
}

/// Resolves the app's open alert of this kind, if any (its condition cleared), notifying.
pub async fn clear(
    tx: &mut PgConnection,
    channels: Channels,
    app_id: i64,
    kind: AlertKind,
    at: DateTime<Utc>,
) -> Result<Option<Alert>, sqlx::Error> {
    let alert = alerts::resolve_open(&mut *tx, app_id, kind, at).await?;
    if let Some(alert) = &alert {
        tracing::info!(alert_id = alert.id, app_id, kind = %kind, "alert resolved");
        notify::alert(tx, channels, alert).await?;
    }
    Ok(alert)
}

/// Raises `offline` for every app of a worker that went offline, and clears it when the
/// worker is back, until shutdown.
pub fn spawn_offline_watch(db: PgPool, channels: Channels, hub: &Hub, shutdown: CancellationToken) {
    let mut events = hub.subscribe();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let result = match event {
                Ok(HubEvent::WorkerOffline { worker_id }) => {
                    worker_moved(&db, channels, worker_id, true).await
                }
                Ok(HubEvent::WorkerOnline { worker_id }) => {
                    worker_moved(&db, channels, worker_id, false).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Ok(()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot raise or clear offline alerts");
            }
        }
    });
}

async fn worker_moved(
    db: &PgPool,
    channels: Channels,
    worker_id: i64,
    offline: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let now = Utc::now();
    let name = crate::store::workers::name_of(&mut *tx, worker_id).await?.unwrap_or_default();
    for app_id in crate::store::apps::placed_on(&mut *tx, worker_id).await? {
        if offline {
            raise(
                &mut tx,
                channels,
                app_id,
                AlertKind::Offline,
                &format!("its worker {name} is offline"),
                now,
            )
            .await?;
        } else {
            clear(&mut tx, channels, app_id, AlertKind::Offline, now).await?;
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap_or_default()
    }

    fn run(values: &[(i64, Option<f64>)], sustain: i64) -> Vec<(i64, Verdict)> {
        let mut state = RuleState { id: 1, over_since: None, under_since: None, firing: false };
        let mut out = Vec::new();
        for (minute, value) in values {
            let (next, verdict) = step(&state, 80.0, chrono::Duration::minutes(sustain), *value, at(*minute));
            state = next;
            if let Some(v) = verdict {
                out.push((*minute, v));
            }
        }
        out
    }

    #[test]
    fn a_metric_fires_only_after_staying_over_for_the_sustain_span_and_resolves_after_as_long_under() {
        let values: Vec<(i64, Option<f64>)> = vec![
            (0, Some(90.0)),
            (2, Some(95.0)),
            // A dip resets the span.
            (3, Some(50.0)),
            (4, Some(90.0)),
            (8, Some(90.0)),
            (9, Some(90.0)), // 5 minutes over since minute 4
            (10, Some(99.0)),
            (11, Some(10.0)),
            (14, Some(90.0)), // back over before 5 minutes under: still firing, no verdict
            (15, Some(10.0)),
            (19, Some(10.0)),
            (20, Some(10.0)), // 5 minutes under since minute 15
        ];
        assert_eq!(run(&values, 5), vec![(9, Verdict::Fire), (20, Verdict::Resolve)]);
    }

    #[test]
    fn with_no_sustain_a_metric_fires_and_resolves_at_once_and_equal_to_the_threshold_is_not_over() {
        let values = [(0, Some(80.0)), (1, Some(80.1)), (2, Some(80.0))];
        assert_eq!(run(&values, 0), vec![(1, Verdict::Fire), (2, Verdict::Resolve)]);
    }

    #[test]
    fn without_live_figures_the_state_holds() {
        let values = [(0, Some(90.0)), (3, None), (5, Some(90.0))];
        assert_eq!(run(&values, 5), vec![(5, Verdict::Fire)], "the span counts from minute 0");
        let values = [(0, Some(90.0)), (1, None), (2, None)];
        assert!(run(&values, 1).is_empty(), "no figures, no verdict");
    }

    #[test]
    fn a_round_reports_only_the_rules_whose_state_moved() {
        let rule = |id: i64, firing: bool, over: Option<DateTime<Utc>>| MetricRule {
            id,
            app_id: id,
            user_id: 1,
            worker_id: Some(1),
            kind: AlertKind::Cpu,
            threshold: 80.0,
            sustain_minutes: 5,
            over_since: over,
            under_since: None,
            firing,
        };
        // 1: over for 10 minutes, not firing → fires. 2: over since 1 minute → unchanged.
        // 3: no figures. 4: firing and now under → starts its under span.
        let rules = [
            rule(1, false, Some(at(0))),
            rule(2, false, Some(at(9))),
            rule(3, false, None),
            rule(4, true, Some(at(0))),
        ];
        let value = |r: &MetricRule| match r.id {
            1 | 2 => Some(95.0),
            4 => Some(5.0),
            _ => None,
        };
        let (moved, verdicts) = decide(&rules, value, at(10));
        assert_eq!(moved.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(
            verdicts.iter().map(|d| (d.index, d.verdict)).collect::<Vec<_>>(),
            vec![(0, Verdict::Fire)]
        );
        assert_eq!(describe(&rules[0], "app1", Some(95.0)), "app1: CPU at 95.0% for 5 minutes (over 80%)");
    }
}
