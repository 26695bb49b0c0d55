//! The STS's events and the gateways' decisions as one timeline (docs/audit.md §4.2): the merge
//! `GET /agentid/v1/auditEvents` pages through and the console's timeline and chain page show.

use super::events::GatewayEvent;
use crate::audit::AuditEvent;

/// One event of the merged timeline.
#[derive(Debug, Clone)]
pub enum TrailEvent {
    // Boxed: the rows are large and differ in size.
    Sts(Box<AuditEvent>),
    Gateway(Box<GatewayEvent>),
}

impl TrailEvent {
    /// Unix seconds.
    pub fn time(&self) -> i64 {
        match self {
            TrailEvent::Sts(e) => e.time,
            TrailEvent::Gateway(e) => e.time,
        }
    }
}

/// Merges two newest-first lists (as `audit_events` and `gateway_events` return them) into one
/// newest-first list of at most `limit`; at equal times the STS's event comes first (it issued
/// the token the decision was made with). Also returns how many of each were taken, for
/// per-source paging.
pub fn merge_newest_first(
    sts: Vec<AuditEvent>,
    gateway: Vec<GatewayEvent>,
    limit: usize,
) -> (Vec<TrailEvent>, usize, usize) {
    let mut out = Vec::with_capacity(limit.min(sts.len() + gateway.len()));
    let (mut s, mut g) = (sts.into_iter().peekable(), gateway.into_iter().peekable());
    let (mut taken_s, mut taken_g) = (0, 0);
    while out.len() < limit {
        let take_sts = match (s.peek(), g.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.time >= b.time,
        };
        if take_sts {
            out.extend(s.next().map(|e| TrailEvent::Sts(Box::new(e))));
            taken_s += 1;
        } else {
            out.extend(g.next().map(|e| TrailEvent::Gateway(Box::new(e))));
            taken_g += 1;
        }
    }
    (out, taken_s, taken_g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(time: i64, id: &str) -> AuditEvent {
        AuditEvent {
            time,
            id: id.into(),
            ..Default::default()
        }
    }

    fn gw(time: i64, id: &str) -> GatewayEvent {
        GatewayEvent {
            time,
            event_id: id.into(),
            ..Default::default()
        }
    }

    fn ids(events: &[TrailEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                TrailEvent::Sts(e) => e.id.clone(),
                TrailEvent::Gateway(e) => e.event_id.clone(),
            })
            .collect()
    }

    #[test]
    fn merges_newest_first_sts_first_on_ties_and_stops_at_the_limit() {
        let s = vec![sts(9, "s9"), sts(5, "s5"), sts(1, "s1")];
        let g = vec![gw(7, "g7"), gw(5, "g5"), gw(2, "g2")];
        let (all, ns, ng) = merge_newest_first(s.clone(), g.clone(), 100);
        assert_eq!(ids(&all), ["s9", "g7", "s5", "g5", "g2", "s1"]);
        assert_eq!((ns, ng), (3, 3));
        assert!(all.windows(2).all(|w| w[0].time() >= w[1].time()));
        let (some, ns, ng) = merge_newest_first(s.clone(), g.clone(), 4);
        assert_eq!(ids(&some), ["s9", "g7", "s5", "g5"]);
        assert_eq!((ns, ng), (2, 2));
        let (none, ..) = merge_newest_first(s.clone(), g, 0);
        assert!(none.is_empty());
        let (only, ns, ng) = merge_newest_first(s, Vec::new(), 2);
        assert_eq!(ids(&only), ["s9", "s5"]);
        assert_eq!((ns, ng), (2, 0));
    }
}
