//! `lanehub members import|export|outbox` for every membership provider.
//!
//! With `sqlite` they work on the store's database file (`store::admin`). With `postgres`
//! they work on the shared database. With `http` an import queues the members in the outbox
//! for the running lanehub to deliver to the CRM; an export reads the CRM's member listing.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use clap::Subcommand;
use secrecy::ExposeSecret;

use super::PostgresMembers;
use super::crm::CrmMember;
use crate::config::{DatabaseSettings, MembersProvider};
use crate::store::admin::{self, ImportReport};
use crate::store::{MembershipStore, OutboxEntry, read_members, write_members};

/// `lanehub members outbox …`
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// List the enrollments waiting for the CRM or refused by it (the default).
    List,
    /// Make an entry (or, with --all, every entry) due for delivery at once, refused ones
    /// included: after fixing what the CRM refused, or to skip a backoff.
    Retry {
        /// The entry's id, as `lanehub members outbox` lists it.
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `store.name`, which the shared providers keep with each member.
fn store_name(settings: &DatabaseSettings) -> anyhow::Result<&str> {
    let name = settings.store.name.as_str();
    if let Some(why) = crate::config::store_name_problem(name) {
        anyhow::bail!("store.name: {why}");
    }
    if name.is_empty() {
        anyhow::bail!("store.name: is needed with a shared members provider");
    }
    Ok(name)
}

fn postgres(settings: &DatabaseSettings) -> anyhow::Result<PostgresMembers> {
    let url = settings.members.postgres_url.expose_secret();
    if url.is_empty() {
        anyhow::bail!(
            "members.postgres_url is not set: the service has it in its environment \
             (LANEHUB__MEMBERS__POSTGRES_URL in /etc/default/lanehub); set it here too"
        );
    }
    PostgresMembers::new(url, store_name(settings)?)
        .map_err(|why| anyhow::anyhow!("members.postgres_url: {why}"))
}

/// Validates every row of `file`, then stores them all or none; returns what to print.
pub fn import(settings: &DatabaseSettings, file: &Path) -> anyhow::Result<String> {
    if settings.members.provider == MembersProvider::Sqlite {
        return Ok(admin::import_members(&settings.store, file)?.to_string());
    }
    let shown = file.display().to_string();
    let reader = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let rows = read_members(std::io::BufReader::new(reader), Utc::now())
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    match settings.members.provider {
        MembersProvider::Sqlite => unreachable!("handled above"),
        MembersProvider::Postgres => {
            let pg = postgres(settings)?;
            let counts = runtime()?.block_on(pg.import(rows))?;
            Ok(ImportReport {
                file: file.to_owned(),
                counts,
            }
            .to_string())
        }
        MembersProvider::Http => {
            let store = store_name(settings)?;
            let entries = rows
                .iter()
                .map(|m| {
                    let body = CrmMember::from_member(m, store);
                    Ok((m.phone_number.clone(), serde_json::to_value(body)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let n = admin::outbox_push_all(&settings.store, &entries)?;
            Ok(format!(
                "queued {n} members from {shown} in the outbox; the running lanehub delivers \
                 them to the CRM (`lanehub members outbox` shows what waits)"
            ))
        }
    }
}

/// Writes every member as CSV to `dest`, or to stdout for `None` or `-`; returns the count.
pub fn export(settings: &DatabaseSettings, dest: Option<&Path>) -> anyhow::Result<usize> {
    match settings.members.provider {
        MembersProvider::Sqlite => Ok(admin::export_members(&settings.store, dest)?),
        MembersProvider::Http => {
            let m = &settings.members;
            if m.http_base_url.is_empty() {
                anyhow::bail!("members.http_base_url is not set");
            }
            let listed = super::crm::list_members(&m.http_base_url, &m.http_token, m.http_timeout);
            let all = runtime()?
                .block_on(listed)
                .map_err(|e| anyhow::anyhow!("members.http_base_url: {e}"))?;
            write_export(dest, &all)?;
            Ok(all.len())
        }
        MembersProvider::Postgres => {
            let pg = postgres(settings)?;
            let all = runtime()?.block_on(pg.members())?;
            write_export(dest, &all)?;
            Ok(all.len())
        }
    }
}

/// Writes `all` as CSV to `dest` (0600: it holds phone numbers), or to stdout for `None` or `-`.
fn write_export(dest: Option<&Path>, all: &[crate::store::Member]) -> anyhow::Result<()> {
    {
        {
            match dest.filter(|p| *p != Path::new("-")) {
                None => write_members(std::io::stdout().lock(), all)?,
                Some(path) => {
                    let shown = path.display().to_string();
                    let mut options = std::fs::OpenOptions::new();
                    options.write(true).create(true).truncate(true);
                    // It holds phone numbers: readable by its owner only.
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                    let file = options
                        .open(path)
                        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
                    let mut file = std::io::BufWriter::new(file);
                    write_members(&mut file, all).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
                    file.flush().map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
                }
            }
            Ok(())
        }
    }
}

/// `lanehub members outbox [list | retry ID | retry --all]`.
pub fn outbox(settings: &DatabaseSettings, action: Option<OutboxAction>) -> anyhow::Result<()> {
    match action.unwrap_or(OutboxAction::List) {
        OutboxAction::List => {
            let entries = admin::outbox_entries(&settings.store)?;
            print!("{}", render(&entries, Utc::now()));
        }
        OutboxAction::Retry {
            id: None,
            all: false,
        } => {
            anyhow::bail!("name the entry to retry (its id), or --all")
        }
        OutboxAction::Retry { id, .. } => {
            let n = admin::outbox_retry(&settings.store, id)?;
            println!(
                "{n} outbox entries are due for delivery now; a running lanehub sends them \
                 within {} s",
                super::crm::OUTBOX_IDLE_POLL.as_secs()
            );
        }
    }
    Ok(())
}

/// The outbox as a table: phone numbers masked.
pub fn render(entries: &[OutboxEntry], now: chrono::DateTime<Utc>) -> String {
    use std::fmt::Write as _;
    if entries.is_empty() {
        return "the CRM outbox is empty\n".into();
    }
    let mut out = format!(
        "{:>6}  {:<12}  {:<8}  {:>8}  {:>8}  {}\n",
        "id", "phone", "state", "age", "attempts", "last error / next attempt"
    );
    for e in entries {
        let age = humantime::format_duration(std::time::Duration::from_secs(
            (now - e.created_at).num_seconds().max(0).unsigned_abs(),
        ));
        let (state, note) = match e.refused_at {
            Some(_) => ("refused", e.last_error.clone().unwrap_or_default()),
            None => (
                "waiting",
                match &e.last_error {
                    Some(error) => format!("{error}; next at {}", e.next_attempt_at.to_rfc3339()),
                    None => "not tried yet".into(),
                },
            ),
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<12}  {:<8}  {:>8}  {:>8}  {note}",
            e.id,
            e.phone_number.to_string(),
            state,
            age.to_string(),
            e.attempts
        );
    }
    out
}
