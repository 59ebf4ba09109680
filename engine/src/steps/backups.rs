//! `check-backups`: is there a recent enough backup to restore from? Reads the Supabase
//! Management API's backup list (`GET /v1/projects/{ref}/database/backups`, v1-list-all-backups,
//! https://supabase.com/docs/reference/api/v1-list-all-backups) and fails when the newest
//! restorable point is older than `max_age` (the RPO the playbook promises). Read-only.

use super::saas::Api;
use super::{Outputs, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub struct CheckBackups;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBackupsParams {
    /// The Supabase project ref (the subdomain of the project's URL).
    pub project_ref: String,
    /// A Supabase personal access token (from a secret).
    pub token: String,
    /// The oldest acceptable restore point, e.g. `26h` for daily backups or `10m` with PITR.
    pub max_age: crate::playbook::Dur,
    /// Also fail when point-in-time recovery is not enabled.
    #[serde(default)]
    pub require_pitr: bool,
    /// The Supabase Management API (default https://api.supabase.com; a proxy or a stand-in).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    "https://api.supabase.com".into()
}

impl TypedStep for CheckBackups {
    const NAME: &'static str = "check-backups";
    const SUMMARY: &'static str = "fail when the newest Supabase backup (or PITR point) is older than max_age";
    type Params = CheckBackupsParams;

    fn idempotent(_: &CheckBackupsParams) -> bool {
        true
    }

    fn plan(p: &CheckBackupsParams) -> String {
        format!(
            "check that project {} has a restore point newer than {}{}",
            p.project_ref,
            p.max_age,
            if p.require_pitr { " and PITR enabled" } else { "" }
        )
    }

    async fn run(&self, ctx: &StepContext, p: CheckBackupsParams) -> Result<Outputs, StepError> {
        let api = Api::new(&ctx.http, &p.api_url, Some(&p.token), "Supabase", "SUPABASE_ACCESS_TOKEN");
        let list = api.get(&format!("/v1/projects/{}/database/backups", p.project_ref)).await?;
        let now = jiff::Timestamp::now();
        freshness(&list, &p, now)
    }
}

/// The verdict on a backup list at `now` (separate from the HTTP call so it is testable).
fn freshness(list: &Value, p: &CheckBackupsParams, now: jiff::Timestamp) -> Result<Outputs, StepError> {
    let pitr = list.get("pitr_enabled").and_then(Value::as_bool).unwrap_or(false);
    // Only COMPLETED backups can be restored (the others are PENDING, FAILED, REMOVED,
    // ARCHIVED or CANCELLED).
    let latest_backup = list
        .get("backups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("status").and_then(Value::as_str) == Some("COMPLETED"))
        .filter_map(|b| b.get("inserted_at").and_then(Value::as_str)?.parse::<jiff::Timestamp>().ok())
        .max();
    let pitr_latest = if pitr {
        list.get("physical_backup_data")
            .and_then(|d| d.get("latest_physical_backup_date_unix"))
            .and_then(Value::as_i64)
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
    } else {
        None
    };
    let newest = latest_backup.into_iter().chain(pitr_latest).max();
    let age_s = |t: jiff::Timestamp| (now.as_second() - t.as_second()).max(0);
    let outputs = serde_json::json!({
        "project_ref": p.project_ref,
        "pitr_enabled": pitr,
        "latest_backup_at": latest_backup.map(|t| t.to_string()),
        "latest_backup_age_s": latest_backup.map(age_s),
        "pitr_latest_at": pitr_latest.map(|t| t.to_string()),
        "restore_point_age_s": newest.map(age_s),
        "max_age_s": p.max_age.0.as_secs(),
    });
    if p.require_pitr && !pitr {
        return Err(StepError::failed(format!("point-in-time recovery is not enabled for project {}", p.project_ref))
            .with_hint("enable the PITR add-on, or drop require_pitr if daily backups meet the RPO")
            .with_outputs(outputs));
    }
    let Some(newest) = newest else {
        return Err(StepError::failed(format!("project {} has no completed backup", p.project_ref))
            .with_hint("daily backups need a paid plan; take a pg_dump (pg-dump) until there is one")
            .with_outputs(outputs));
    };
    let age = age_s(newest) as u64;
    if age > p.max_age.0.as_secs() {
        let shown = crate::playbook::Dur(std::time::Duration::from_secs(age));
        return Err(StepError::failed(format!(
            "the newest restore point of project {} is {shown} old ({newest}), more than max_age {}",
            p.project_ref, p.max_age
        ))
        .with_hint("check the project's backups in the Supabase dashboard; take a pg_dump now")
        .with_outputs(outputs));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max: u64, require_pitr: bool) -> CheckBackupsParams {
        CheckBackupsParams {
            project_ref: "p".into(),
            token: "t".into(),
            max_age: crate::playbook::Dur(std::time::Duration::from_secs(max)),
            require_pitr,
            api_url: default_api(),
        }
    }

    #[test]
    fn only_completed_backups_and_pitr_points_count() {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let list = serde_json::json!({
            "pitr_enabled": false,
            "backups": [
                {"id": 1, "status": "COMPLETED", "inserted_at": "2026-11-27T00:00:00Z", "is_physical_backup": true},
                {"id": 2, "status": "FAILED", "inserted_at": "2026-11-28T00:00:00Z", "is_physical_backup": true},
            ],
            "physical_backup_data": {"latest_physical_backup_date_unix": now.as_second() - 60}
        });
        let err = freshness(&list, &params(86_400, false), now).unwrap_err();
        assert!(err.to_string().contains("is 36h old"), "{err}");
        let ok = freshness(&list, &params(40 * 3600, false), now).unwrap();
        assert_eq!(ok["latest_backup_age_s"], 36 * 3600);
        // With PITR, the newest recoverable point counts.
        let mut pitr = list.clone();
        pitr["pitr_enabled"] = true.into();
        assert_eq!(freshness(&pitr, &params(600, true), now).unwrap()["restore_point_age_s"], 60);
        assert!(freshness(&list, &params(600, true), now).unwrap_err().to_string().contains("not enabled"));
        let none = serde_json::json!({"pitr_enabled": false, "backups": []});
        assert!(freshness(&none, &params(600, false), now).unwrap_err().to_string().contains("no completed backup"));
    }
}
