//! What the demo prints when a phase ends, and its summary.

use merkle_clock::sim::{SimReport, Simulation, Tick};
use merkle_clock::{cid_of, short_cid};

use super::display::{Display, human_bytes};
use super::{ADMIN, Args, MAX_QUIET_TICKS, Plan, Track, Verdict};
use crate::{Result, draw};

/// The simulator's counters the demo reports, as a plain value, so a phase
/// can report what happened since it began.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub messages: u64,
    pub bytes: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub cut: u64,
    pub undeliverable: u64,
    pub timeouts: u64,
    pub reconnects: u64,
    pub anti_entropy: u64,
    pub errors: u64,
}

impl Counters {
    /// The counters of a run so far ([`Simulation::progress`]).
    pub fn of(r: &SimReport) -> Counters {
        Counters {
            messages: r.messages,
            bytes: r.bytes,
            lost: r.lost,
            duplicated: r.duplicated,
            cut: r.partitioned,
            undeliverable: r.undeliverable,
            timeouts: r.timeouts,
            reconnects: r.reconnects,
            anti_entropy: r.anti_entropy,
            errors: r.errors,
        }
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            messages: self.messages - before.messages,
            bytes: self.bytes - before.bytes,
            lost: self.lost - before.lost,
            duplicated: self.duplicated - before.duplicated,
            cut: self.cut - before.cut,
            undeliverable: self.undeliverable - before.undeliverable,
            timeouts: self.timeouts - before.timeouts,
            reconnects: self.reconnects - before.reconnects,
            anti_entropy: self.anti_entropy - before.anti_entropy,
            errors: self.errors - before.errors,
        }
    }
}

impl Track {
    /// The line that reports the end of the current phase.
    pub(super) fn done_line(&self, plan: &Plan, sim: &Simulation) -> String {
        let p = plan;
        let c = Counters::of(sim.progress()).since(&self.phase_start);
        let new_events = sim.appended().len() - self.phase_events;
        let held = |n| sim.replica(n).map_or(0, |r| r.len());
        match self.phase {
            0 => format!(
                "      done: {new_events} events appended; {} messages ({}), {} lost, {} duplicated",
                c.messages,
                human_bytes(c.bytes),
                c.lost,
                c.duplicated
            ),
            1 => format!(
                "      done: {new_events} events appended; the sides hold {} and {} events; {} messages cut by the partition",
                held(0),
                held(p.split),
                c.cut
            ),
            2 => {
                let merged = match (self.healed_at, &self.heal_target) {
                    (Some(at), Some((from, target))) => format!(
                        "the two sides merged their {} events {} ticks after the heal",
                        target.len(),
                        at + 1 - from
                    ),
                    _ => "the two sides are still merging".into(),
                };
                let joined = match (self.joined_at, &self.join_target) {
                    (Some(at), Some(target)) => format!(
                        "n{} caught up with the {} events then known in {} ticks",
                        p.late,
                        target.len(),
                        at + 1 - p.join_at
                    ),
                    _ => format!("n{} is still catching up", p.late),
                };
                format!("      done: {merged}; {joined}")
            }
            3 => {
                let reopened = self.reopened_with.map_or("?".into(), |n| n.to_string());
                let lost =
                    if self.reopened_with == Some(self.held_at_down as u64) { "nothing lost" } else { "SOME LOST" };
                format!(
                    "      done: n{} held {} events when it stopped and reopened with {reopened} ({lost}); {} messages to it were lost while down",
                    p.restarted,
                    self.held_at_down,
                    self.down_undeliverable.saturating_sub(self.phase_start.undeliverable)
                )
            }
            4 => {
                let r = sim.progress();
                let learned = match self.learned_at {
                    Some(at) => format!("n{} learned of its revocation at tick {at}", p.revoked),
                    None => format!("n{} has not learned of its revocation yet", p.revoked),
                };
                format!(
                    "      done: {learned}; of its {} writes, {} came before (valid: concurrent with the revocation) and {} after, refused so far {} times",
                    p.keep_writing.len(),
                    r.concurrent_with_revocation,
                    r.refused_after_revocation,
                    r.revocation_refusals
                )
            }
            _ => match self.converged_at {
                Some(at) => format!(
                    "      done: all {} replicas agree {} ticks after the network went quiet ({} messages)",
                    p.nodes,
                    at + 1 - p.calm_from(),
                    c.messages
                ),
                None => format!("      gave up: no agreement after {MAX_QUIET_TICKS} ticks of quiet network"),
            },
        }
    }
}

/// Prints the summary of a finished run.
pub(super) fn summary(
    display: &mut Display<'_>,
    args: &Args,
    (plan, sim, track): (&Plan, &Simulation, &Track),
    verdict: &Verdict,
    picture: &draw::Picture,
) -> Result<()> {
    let p = plan;
    let report = sim.progress();
    let c = Counters::of(report);
    let calm_from = p.calm_from();
    let heads = &verdict.heads;
    let s = if heads.len() == 1 { "" } else { "s" };
    let mut fingerprint = Vec::with_capacity(verdict.order.len() * 36);
    for cid in &verdict.order {
        fingerprint.extend_from_slice(&cid.to_bytes());
    }
    let appended = sim.appended().len();
    display.line("")?;
    display.line("summary")?;
    display.line(&format!(
        "  replicas     {} (n{} joined late with only its invitation, n{} restarted from its redb file)",
        p.nodes, p.late, p.restarted
    ))?;
    let grants = p.nodes - 1;
    let concurrent = report.concurrent_with_revocation;
    let written = appended - grants - 1 - concurrent;
    display.line(&format!(
        "  events       {} = 1 genesis + {written} appended ({} replicas × {}) + {grants} grants (the invitation) and 1 revocation by n{ADMIN} + {concurrent} by n{} concurrent with its revocation",
        appended + 1,
        p.nodes,
        args.events,
        p.revoked
    ))?;
    display.line(&format!(
        "  ticks        {} (faults until tick {}, {})",
        report.ticks,
        calm_from - 1,
        track.converged_at.map_or("no agreement".into(), |at| format!("every replica agreed at tick {at}"))
    ))?;
    display.line(&format!(
        "  messages     {} sent, {}: {} lost, {} duplicated, {} cut by the partition, {} to a replica that was down or not yet joined",
        c.messages,
        human_bytes(c.bytes),
        c.lost,
        c.duplicated,
        c.cut,
        c.undeliverable
    ))?;
    display.line(&format!(
        "  round trips  {} after the network went quiet (a message takes one tick each way)",
        track.converged_at.map_or("-".into(), |at| (at + 1 - calm_from).div_ceil(2).to_string())
    ))?;
    display.line(&format!(
        "  sessions     {} restarted by a timeout, {} by a reconnect, {} for anti-entropy; {} protocol errors",
        c.timeouts, c.reconnects, c.anti_entropy, c.errors
    ))?;
    if verdict.agree {
        display.line(&format!(
            "  converged    yes: all {} replicas hold the same {} events, the same {} head{s} and the same order",
            p.nodes,
            verdict.order.len(),
            heads.len(),
        ))?;
    } else {
        display.line("  converged    NO: the replicas differ")?;
    }
    display.line(&revoked_line(p, sim, track, verdict))?;
    display.line(&format!("  order        fingerprint {} on every replica", short_cid(&cid_of(&fingerprint))))?;
    for (i, h) in heads.iter().enumerate() {
        display.line(&format!("  {}{h}", if i == 0 { "heads        " } else { "             " }))?;
    }
    let total_layers = picture.layers.last().map_or(0, |l| l.height) + 1;
    let refused = picture.nodes.iter().filter(|n| n.refused).count();
    display.line(&format!(
        "  picture      {} ({} events in {} of {total_layers} layers, coloured by replica; {refused} refused events dashed red)",
        args.output.display(),
        picture.nodes.len() - refused,
        picture.layers.len()
    ))?;
    Ok(())
}

/// The summary's line on the revoked writer.
fn revoked_line(p: &Plan, sim: &Simulation, track: &Track, verdict: &Verdict) -> String {
    let r = sim.progress();
    let learned = track.learned_at.map_or("it never learned of it".into(), |at| format!("it learned at tick {at}"));
    let refused = if verdict.refused_everywhere {
        format!("{} events refused by all {} replicas, held by none", r.refused_after_revocation, p.nodes)
    } else {
        format!("{} events, NOT refused by every replica", r.refused_after_revocation)
    };
    format!(
        "  revoked      writer n{} (by n{ADMIN} at tick {}; {learned}): {refused}; {} written before it learned are valid, concurrent with the revocation",
        p.revoked,
        p.revoke_at(),
        r.concurrent_with_revocation
    )
}

/// The tick a run converged at, if it did.
pub(super) fn converged_at(report: &SimReport) -> Option<Tick> {
    report.converged.then(|| report.ticks - 1)
}
