//! Periodic schedules from the client: add, list, pause, resume, remove,
//! and a schedule's runs (each an ordinary future).

use warren_core::periodic::Schedule;
use warren_core::store::schedules::Listed;

use super::Client;
use crate::error::Error;

impl Client {
    /// Adds (or replaces) periodic schedule `name`; returns its first tick
    /// (Unix ms). Every scheduler runs its ticks, each exactly once.
    pub async fn add_schedule(&self, name: &str, schedule: &Schedule) -> Result<u64, Error> {
        if !warren_core::args::dependencies(&schedule.args).is_empty() {
            return Err(Error::InvalidArgument(
                "a schedule's arguments cannot be futures (each run is a task of its own)".into(),
            ));
        }
        Ok(self.inner.store.add_schedule(name, schedule).await?)
    }

    /// Every schedule of the namespace.
    pub async fn schedules(&self) -> Result<Vec<Listed>, Error> {
        Ok(self.inner.store.list_schedules().await?)
    }

    /// Pauses (`true`) or resumes (`false`) schedule `name`.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<(), Error> {
        Ok(self.inner.store.pause_schedule(name, paused).await?)
    }

    /// Removes schedule `name`; whether it existed.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        Ok(self.inner.store.remove_schedule(name).await?)
    }

    /// The keys of schedule `name`'s latest runs (up to 100), newest first.
    pub async fn schedule_runs(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self.inner.store.schedule_runs(name).await?)
    }
}
