//! The pair state machine: pure, no I/O.
//!
//! One [`Engine`] per pair on each array. Its state changes only through [`Engine::on`], which
//! takes an [`Event`] and returns the [`Command`]s the runtime must carry out (persist the new
//! state, start or stop the resync worker, raise an alarm, log an event). Tests drive it with
//! events and assert on commands; the runtime (`pair.rs`) owns the I/O.
//!
//! States (DESIGN.md, "Pair states"):
//! - `Normal`: every change is dual-written; both sides Consistent; DCL empty.
//! - `Synchronizing`: the link is up and the resync worker copies what the DCL names from the
//!   serving side to the other; changes are dual-written meanwhile (and recorded in the DCL
//!   when the remote apply fails); the secondary is Inconsistent until it finishes.
//! - `ToBeSynchronized`: the serving side goes on alone and records the DCL; resync starts by
//!   itself when the link returns.
//! - `Paused`: an operator stopped replication on purpose; the DCL records; only `resume`
//!   leaves it.

use serde::{Deserialize, Serialize};

/// The state of a pair, the same word on both sides.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    Normal,
    Synchronizing,
    ToBeSynchronized,
    Paused,
}

impl PairState {
    /// Whether changes are sent to the remote side in this state (otherwise they only go to
    /// the DCL).
    #[must_use]
    pub fn replicates(self) -> bool {
        matches!(self, Self::Normal | Self::Synchronizing)
    }
}

impl std::fmt::Display for PairState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Normal => "Normal",
            Self::Synchronizing => "Synchronizing",
            Self::ToBeSynchronized => "ToBeSynchronized",
            Self::Paused => "Paused",
        })
    }
}

/// Which side of the pair this array is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Serves the fs to hosts; source of resync.
    Primary,
    /// Receives the replicated ops; target of resync.
    Secondary,
}

/// Whether one side's copy of the data is whole.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataStatus {
    Consistent,
    Inconsistent,
}

/// What happens to a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A change could not be applied on the remote side (peer down, link cut, remote error).
    RemoteFailed { reason: String },
    /// Both sides applied a change in Normal and answered differently.
    Diverged { detail: String },
    LinkDown { reason: String },
    LinkUp,
    /// Operator: `pair pause`.
    Pause,
    /// Operator: `pair resume`.
    Resume,
    /// The resync worker copied everything and the DCL is empty.
    ResyncDone,
    /// The resync worker stopped on an error (it restarts when the link returns / on resume).
    ResyncFailed { reason: String },
}

/// What the runtime must do after a transition, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Persist the pair record (state) before anything else is acknowledged under it.
    Persist,
    StartResync,
    StopResync,
    /// Raise an alarm the operator sees until the pair is Normal again.
    Alarm(String),
    /// Clear the alarms of this pair.
    ClearAlarms,
    /// An entry for the event log: what changed and why.
    Log(String),
}

/// Why an operator action is refused (typed, so the CLI can say what to do).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the pair is {state}; {action} needs {needs}")]
    WrongState { action: &'static str, state: PairState, needs: &'static str },
    #[error("the link to the peer is down; resume needs the peer reachable (check `metrofs pair show`)")]
    LinkDown,
    #[error("this array is the secondary of the pair; run the command on the serving array")]
    NotPrimary,
}

/// The pair state machine of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    state: PairState,
    role: Role,
    link_up: bool,
}

impl Engine {
    #[must_use]
    pub fn new(state: PairState, role: Role) -> Self {
        Self { state, role, link_up: false }
    }

    #[must_use]
    pub fn state(&self) -> PairState {
        self.state
    }

    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    #[must_use]
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Data status of (local, remote) as this side knows it.
    #[must_use]
    pub fn data_status(&self) -> (DataStatus, DataStatus) {
        let secondary = if self.state == PairState::Normal { DataStatus::Consistent } else { DataStatus::Inconsistent };
        match self.role {
            Role::Primary => (DataStatus::Consistent, secondary),
            Role::Secondary => (secondary, DataStatus::Consistent),
        }
    }

    /// Whether an operator action is allowed now (checked before it is turned into an event).
    pub fn check(&self, event: &Event) -> Result<(), Refused> {
        match event {
            Event::Pause => match self.state {
                PairState::Paused => Err(Refused::WrongState { action: "pause", state: self.state, needs: "a pair that is not already Paused" }),
                _ if self.role != Role::Primary => Err(Refused::NotPrimary),
                _ => Ok(()),
            },
            Event::Resume => {
                if self.role != Role::Primary {
                    Err(Refused::NotPrimary)
                } else if !matches!(self.state, PairState::Paused | PairState::ToBeSynchronized) {
                    Err(Refused::WrongState { action: "resume", state: self.state, needs: "Paused or ToBeSynchronized" })
                } else if !self.link_up {
                    Err(Refused::LinkDown)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// The only way the state changes.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        use PairState::{Normal, Paused, Synchronizing, ToBeSynchronized};
        let before = self.state;
        let mut cmds = Vec::new();
        match event {
            Event::LinkUp => {
                self.link_up = true;
                if self.role == Role::Primary && before == ToBeSynchronized {
                    self.state = Synchronizing;
                    cmds.push(Command::StartResync);
                }
            }
            Event::LinkDown { reason } => {
                self.link_up = false;
                // The state word is the serving side's: a secondary keeps the last one it was
                // told (its copy is whole exactly when that is Normal; arbitration needs it).
                if self.role == Role::Primary && matches!(before, Normal | Synchronizing) {
                    self.state = ToBeSynchronized;
                    if before == Synchronizing {
                        cmds.push(Command::StopResync);
                    }
                    cmds.push(Command::Alarm(format!("replication link down: {reason}; the pair is ToBeSynchronized, changes are recorded in the DCL")));
                }
            }
            Event::RemoteFailed { reason } => match before {
                Normal | Synchronizing if self.role == Role::Primary => {
                    self.state = ToBeSynchronized;
                    if before == Synchronizing {
                        cmds.push(Command::StopResync);
                    }
                    cmds.push(Command::Alarm(format!("a change did not reach the peer: {reason}; the pair is ToBeSynchronized")));
                }
                _ => {}
            },
            Event::Diverged { detail } => {
                // Divergence is recorded in the DCL by the write path; the pair must resync
                // those objects before it can call itself Normal again.
                cmds.push(Command::Alarm(format!("the two sides answered a change differently: {detail}; the object is in the DCL and will be resynchronised")));
                if before == Normal {
                    self.state = if self.link_up { Synchronizing } else { ToBeSynchronized };
                    if self.state == Synchronizing {
                        cmds.push(Command::StartResync);
                    }
                }
            }
            Event::Pause => {
                if before != Paused {
                    if before == Synchronizing {
                        cmds.push(Command::StopResync);
                    }
                    self.state = Paused;
                }
            }
            Event::Resume => {
                if matches!(before, Paused | ToBeSynchronized) && self.link_up {
                    self.state = Synchronizing;
                    cmds.push(Command::StartResync);
                }
            }
            Event::ResyncDone => {
                if before == Synchronizing {
                    self.state = Normal;
                    cmds.push(Command::ClearAlarms);
                }
            }
            Event::ResyncFailed { reason } => {
                if before == Synchronizing {
                    self.state = ToBeSynchronized;
                    cmds.push(Command::Alarm(format!("resynchronisation stopped: {reason}; it restarts when the link returns or on `pair resume`")));
                }
            }
        }
        if self.state != before {
            cmds.insert(0, Command::Persist);
            cmds.push(Command::Log(format!("pair state {before} -> {}", self.state)));
        }
        cmds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(state: PairState) -> Engine {
        let mut e = Engine::new(state, Role::Primary);
        e.on(Event::LinkUp);
        e
    }

    #[test]
    fn link_loss_degrades_and_return_resyncs() {
        let mut e = primary(PairState::Normal);
        let cmds = e.on(Event::LinkDown { reason: "cut".into() });
        assert_eq!(e.state(), PairState::ToBeSynchronized);
        assert_eq!(cmds[0], Command::Persist);
        assert!(matches!(cmds[1], Command::Alarm(_)));
        assert!(!e.state().replicates());
        let cmds = e.on(Event::LinkUp);
        assert_eq!(e.state(), PairState::Synchronizing);
        assert_eq!(cmds, vec![Command::Persist, Command::StartResync, Command::Log("pair state ToBeSynchronized -> Synchronizing".into())]);
        assert!(e.state().replicates());
        let cmds = e.on(Event::ResyncDone);
        assert_eq!(e.state(), PairState::Normal);
        assert!(cmds.contains(&Command::ClearAlarms));
        assert_eq!(e.data_status(), (DataStatus::Consistent, DataStatus::Consistent));
    }

    #[test]
    fn remote_failure_while_synchronizing_stops_the_worker() {
        let mut e = primary(PairState::Synchronizing);
        let cmds = e.on(Event::RemoteFailed { reason: "peer answered EIO".into() });
        assert_eq!(e.state(), PairState::ToBeSynchronized);
        assert!(cmds.contains(&Command::StopResync));
        assert_eq!(e.data_status(), (DataStatus::Consistent, DataStatus::Inconsistent));
    }

    #[test]
    fn pause_holds_until_resume_even_when_the_link_returns() {
        let mut e = primary(PairState::Normal);
        assert_eq!(e.check(&Event::Pause), Ok(()));
        e.on(Event::Pause);
        assert_eq!(e.state(), PairState::Paused);
        assert!(!e.state().replicates());
        e.on(Event::LinkDown { reason: "x".into() });
        e.on(Event::LinkUp);
        assert_eq!(e.state(), PairState::Paused);
        assert!(e.check(&Event::Pause).is_err());
        assert_eq!(e.check(&Event::Resume), Ok(()));
        let cmds = e.on(Event::Resume);
        assert_eq!(e.state(), PairState::Synchronizing);
        assert!(cmds.contains(&Command::StartResync));
    }

    #[test]
    fn operator_actions_refused_in_the_wrong_state_change_nothing() {
        let mut e = primary(PairState::Normal);
        let before = e.clone();
        assert!(matches!(e.check(&Event::Resume), Err(Refused::WrongState { .. })));
        assert_eq!(e, before);
        e.on(Event::Pause);
        e.on(Event::LinkDown { reason: "x".into() });
        assert_eq!(e.check(&Event::Resume), Err(Refused::LinkDown));
        let secondary = Engine::new(PairState::Normal, Role::Secondary);
        assert_eq!(secondary.check(&Event::Pause), Err(Refused::NotPrimary));
    }

    #[test]
    fn divergence_is_never_hidden() {
        let mut e = primary(PairState::Normal);
        let cmds = e.on(Event::Diverged { detail: "ino 7: Exist vs Ok".into() });
        assert!(cmds.iter().any(|c| matches!(c, Command::Alarm(_))));
        assert_eq!(e.state(), PairState::Synchronizing);
    }

    #[test]
    fn a_secondary_keeps_the_state_it_was_told_when_the_link_drops() {
        let mut e = Engine::new(PairState::Normal, Role::Secondary);
        e.on(Event::LinkUp);
        assert!(e.on(Event::LinkDown { reason: "cut".into() }).is_empty());
        assert_eq!(e.state(), PairState::Normal);
        assert!(!e.link_up());
    }

    #[test]
    fn the_secondary_never_starts_a_resync() {
        let mut e = Engine::new(PairState::ToBeSynchronized, Role::Secondary);
        let cmds = e.on(Event::LinkUp);
        assert!(!cmds.contains(&Command::StartResync));
    }
}
