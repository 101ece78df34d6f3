//! Arbitration (DESIGN.md, "Arbitration and failover"): who goes on serving a pair when the two
//! arrays lose each other. Pure decisions here; [`crate::metro`] carries them out.
//!
//! The rules, per pair, when the link is lost (or was not up at start):
//! - Only a side whose copy is whole may go on: the serving side (it has everything
//!   acknowledged), or a secondary while the pair is Normal. A secondary being synchronised
//!   never claims: it would serve old data.
//! - A serving side that was replicating (Normal or Synchronizing) stops acknowledging changes
//!   until it has won; one that was already alone (ToBeSynchronized, Paused) holds its epoch
//!   and goes on: its peer is not whole and cannot claim.
//! - Quorum mode: the preferred site asks the quorum server for the next epoch at once, the
//!   other after `head_start`. The server grants an epoch once, durably: at most one winner.
//!   A side that cannot reach the quorum stops and keeps asking while the link is down.
//! - Static mode (no quorum server configured, or both arrays saw it unreachable while they
//!   still talked, see [`ModeLeader`]): `on_quorum_loss = "static-priority"` lets the preferred
//!   site go on and stops the other; `"stop"` stops both.
//!
//! Why the mode needs agreement: if the preferred site were in static mode while the other was
//! in quorum mode, the preferred could go on by priority while the other wins the quorum: two
//! sides serving. So the preferred site enters static mode only after the other has recorded
//! it, and the other leaves static mode only after the preferred has: "preferred static ⇒
//! other static" holds at every instant, whatever message is lost.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{PairState, Role};

/// What a quorum server answered a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Granted,
    /// Someone holds this epoch or a later one.
    Denied { epoch: u64, holder: String },
}

/// A quorum server as `pair show` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumServerView {
    pub addr: String,
    pub reachable: bool,
    pub rtt_us: Option<u64>,
    pub last_error: Option<String>,
}

/// Boxed future of the [`Quorum`] trait (object safe).
pub type QuorumFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The quorum servers of the domain, as the metro module uses them. The daemon adapts
/// `metrofs_quorum::QuorumClient` to it; tests may use an in-memory one.
pub trait Quorum: Send + Sync + 'static {
    /// Asks for `epoch` of `scope` (the pair id). `Err` when no majority answered.
    fn claim(&self, scope: u64, epoch: u64) -> QuorumFuture<'_, Claim>;
    /// Operator force start: records `epoch` (or a later one) for this array unconditionally;
    /// returns the epoch recorded. `Err` when no server answered.
    fn force(&self, scope: u64, epoch: u64) -> QuorumFuture<'_, u64>;
    /// Whether a majority of the servers is reachable now.
    fn reachable(&self) -> bool;
    fn servers(&self) -> Vec<QuorumServerView>;
}

/// `[quorum] on_quorum_loss`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnQuorumLoss {
    /// The preferred site goes on, the other stops.
    #[default]
    StaticPriority,
    /// Both stop until the link returns.
    Stop,
}

/// `[domain] recovery`: what happens once a returning array is resynchronised.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// A planned swap moves the service back to the preferred site.
    #[default]
    Automatic,
    /// The service stays where it is until an operator swaps it.
    Manual,
}

/// How this array arbitrates.
#[derive(Clone)]
pub struct ArbitrationConfig {
    pub quorum: Option<std::sync::Arc<dyn Quorum>>,
    pub on_quorum_loss: OnQuorumLoss,
    /// How long the non-preferred side waits before it claims.
    pub head_start: Duration,
    /// Between two claims while the quorum cannot be reached.
    pub retry: Duration,
    pub recovery: Recovery,
}

impl Default for ArbitrationConfig {
    fn default() -> Self {
        Self {
            quorum: None,
            on_quorum_loss: OnQuorumLoss::StaticPriority,
            head_start: Duration::from_millis(DEFAULT_HEAD_START_MS),
            retry: Duration::from_millis(1000),
            recovery: Recovery::Automatic,
        }
    }
}

impl std::fmt::Debug for ArbitrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArbitrationConfig")
            .field("quorum", &self.quorum.as_ref().map(|q| q.servers()))
            .field("on_quorum_loss", &self.on_quorum_loss)
            .field("head_start", &self.head_start)
            .field("recovery", &self.recovery)
            .finish()
    }
}

/// Default head start of the preferred site.
pub const DEFAULT_HEAD_START_MS: u64 = 500;

/// Whether arbitration asks the quorum or follows static priority.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Quorum,
    Static,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Quorum => "quorum",
            Self::Static => "static-priority",
        })
    }
}

/// What one side knows when it must decide.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Situation {
    pub role: Role,
    /// The pair's state as this side knows it (for a secondary: as the serving side last told).
    pub state: PairState,
    /// A serving side that has not yet confirmed, since it started, that it still holds the
    /// pair (it was replicating when it stopped).
    pub unsettled: bool,
    pub preferred: bool,
    pub mode: Mode,
    pub on_quorum_loss: OnQuorumLoss,
}

/// What a side does about a lost link.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to decide: a serving side already alone goes on, a secondary that is not whole
    /// stays as it is.
    Keep,
    /// Ask the quorum for the next epoch after `delay`.
    Claim { delay: Duration },
    /// Go on by static priority (the next epoch, without a quorum).
    WinStatic,
    /// Stop acknowledging (a serving side) or stay (a secondary), until the link returns.
    Stand,
}

impl Situation {
    /// Whether this side's copy holds everything acknowledged.
    #[must_use]
    pub fn whole(&self) -> bool {
        self.role == Role::Primary || self.state == PairState::Normal
    }

    #[must_use]
    pub fn plan(&self, head_start: Duration) -> Plan {
        let involved = match self.role {
            Role::Primary => self.state.replicates() || self.unsettled,
            Role::Secondary => self.state == PairState::Normal,
        };
        if !involved {
            return Plan::Keep;
        }
        match self.mode {
            Mode::Quorum => Plan::Claim { delay: if self.preferred { Duration::ZERO } else { head_start } },
            Mode::Static => match self.on_quorum_loss {
                OnQuorumLoss::Stop => Plan::Stand,
                OnQuorumLoss::StaticPriority if self.preferred && self.whole() => Plan::WinStatic,
                OnQuorumLoss::StaticPriority => Plan::Stand,
            },
        }
    }
}

/// The preferred site's half of the mode agreement: what to tell the other side, given what
/// both see of the quorum. `None`: nothing to change.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ModeStep {
    /// Ask the other to record static mode; record it here only once it confirmed.
    EnterStatic,
    /// Record quorum mode here first, then tell the other.
    LeaveStatic,
}

/// Decides the preferred site's next mode step.
#[must_use]
pub fn mode_step(current: Mode, here_reachable: bool, there_reachable: bool) -> Option<ModeStep> {
    let want = if !here_reachable && !there_reachable { Mode::Static } else { Mode::Quorum };
    match (current, want) {
        (Mode::Quorum, Mode::Static) => Some(ModeStep::EnterStatic),
        (Mode::Static, Mode::Quorum) => Some(ModeStep::LeaveStatic),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sit(role: Role, state: PairState, preferred: bool, mode: Mode) -> Situation {
        Situation { role, state, unsettled: false, preferred, mode, on_quorum_loss: OnQuorumLoss::StaticPriority }
    }

    const HS: Duration = Duration::from_millis(500);

    #[test]
    fn quorum_mode_preferred_asks_at_once_the_other_waits() {
        assert_eq!(sit(Role::Primary, PairState::Normal, true, Mode::Quorum).plan(HS), Plan::Claim { delay: Duration::ZERO });
        assert_eq!(sit(Role::Secondary, PairState::Normal, false, Mode::Quorum).plan(HS), Plan::Claim { delay: HS });
        assert_eq!(sit(Role::Secondary, PairState::Normal, true, Mode::Quorum).plan(HS), Plan::Claim { delay: Duration::ZERO });
    }

    #[test]
    fn a_secondary_that_is_not_whole_never_claims() {
        for state in [PairState::Synchronizing, PairState::ToBeSynchronized, PairState::Paused] {
            for mode in [Mode::Quorum, Mode::Static] {
                assert_eq!(sit(Role::Secondary, state, true, mode).plan(HS), Plan::Keep, "{state} {mode}");
            }
        }
    }

    #[test]
    fn a_serving_side_already_alone_goes_on() {
        for state in [PairState::ToBeSynchronized, PairState::Paused] {
            assert_eq!(sit(Role::Primary, state, false, Mode::Quorum).plan(HS), Plan::Keep);
        }
        let mut s = sit(Role::Primary, PairState::ToBeSynchronized, false, Mode::Quorum);
        s.unsettled = true;
        assert_eq!(s.plan(HS), Plan::Claim { delay: HS });
    }

    #[test]
    fn static_priority_lets_only_the_preferred_go_on() {
        assert_eq!(sit(Role::Primary, PairState::Normal, true, Mode::Static).plan(HS), Plan::WinStatic);
        assert_eq!(sit(Role::Primary, PairState::Normal, false, Mode::Static).plan(HS), Plan::Stand);
        assert_eq!(sit(Role::Secondary, PairState::Normal, true, Mode::Static).plan(HS), Plan::WinStatic);
        assert_eq!(sit(Role::Secondary, PairState::Normal, false, Mode::Static).plan(HS), Plan::Stand);
        let mut s = sit(Role::Primary, PairState::Normal, true, Mode::Static);
        s.on_quorum_loss = OnQuorumLoss::Stop;
        assert_eq!(s.plan(HS), Plan::Stand);
    }

    /// Whatever the two sides see, at most one of them serves after a link loss in one epoch:
    /// checked over every combination of roles, states, modes (with the agreement invariant
    /// "preferred static ⇒ other static") and quorum answers.
    #[test]
    fn never_two_winners() {
        let states = [PairState::Normal, PairState::Synchronizing, PairState::ToBeSynchronized, PairState::Paused];
        for a_primary in [true, false] {
            for state_p in states {
                // The secondary knows the primary's state or an older one: Normal only if the
                // primary was Normal or just left it for Synchronizing (a divergence), or for
                // ToBeSynchronized by winning the next epoch (then the quorum has granted it).
                // Pause is acknowledged by the secondary before it takes effect.
                for state_s in states {
                    if state_s == PairState::Normal && !matches!(state_p, PairState::Normal | PairState::Synchronizing | PairState::ToBeSynchronized) {
                        continue;
                    }
                    let primary_won_before = state_p == PairState::ToBeSynchronized && state_s == PairState::Normal;
                    for (mode_pref, mode_other) in [(Mode::Quorum, Mode::Quorum), (Mode::Static, Mode::Static), (Mode::Quorum, Mode::Static)] {
                        for loss in [OnQuorumLoss::StaticPriority, OnQuorumLoss::Stop] {
                            // Site a is preferred.
                            let (role_a, role_b) = if a_primary { (Role::Primary, Role::Secondary) } else { (Role::Secondary, Role::Primary) };
                            let st = |r: Role| if r == Role::Primary { state_p } else { state_s };
                            let a = Situation { role: role_a, state: st(role_a), unsettled: false, preferred: true, mode: mode_pref, on_quorum_loss: loss };
                            let b = Situation { role: role_b, state: st(role_b), unsettled: false, preferred: false, mode: mode_other, on_quorum_loss: loss };
                            // The quorum grants the first claim it gets: whichever order.
                            if primary_won_before && mode_pref == Mode::Static && !(a_primary) {
                                // Won by static priority: only the preferred can have.
                                continue;
                            }
                            for a_first in [true, false] {
                                let mut granted = primary_won_before;
                                let mut serves = |s: &Situation, first_pass: bool| -> bool {
                                    match s.plan(HS) {
                                        Plan::Keep => s.role == Role::Primary && !first_pass,
                                        Plan::WinStatic => true,
                                        Plan::Stand => false,
                                        Plan::Claim { .. } => {
                                            if granted {
                                                false
                                            } else {
                                                granted = true;
                                                true
                                            }
                                        }
                                    }
                                };
                                let (sa, sb) = if a_first {
                                    let sa = serves(&a, false);
                                    (sa, serves(&b, false))
                                } else {
                                    let sb = serves(&b, false);
                                    (serves(&a, false), sb)
                                };
                                assert!(!(sa && sb), "two winners: {a:?} {b:?} a_first={a_first}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_mode_follows_both_views() {
        assert_eq!(mode_step(Mode::Quorum, false, false), Some(ModeStep::EnterStatic));
        assert_eq!(mode_step(Mode::Quorum, true, false), None);
        assert_eq!(mode_step(Mode::Quorum, false, true), None);
        assert_eq!(mode_step(Mode::Static, true, false), Some(ModeStep::LeaveStatic));
        assert_eq!(mode_step(Mode::Static, false, false), None);
    }
}
