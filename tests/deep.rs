//! Deep and wide histories: a 100,000-event chain and a DAG with 1,000
//! concurrent heads folded by one merge event. Every walk must be iterative:
//! these run on the default 2 MiB test thread stack, in debug builds.

use ipld_core::cid::Cid;
use merkle_clock::{Block, BlockSet, ClockOrder, Dag, Event, heads, order};

const CHAIN: usize = 100_000;
const WIDE: usize = 1_000;

/// Real encoded events: a genesis and `n - 1` events, each the child of the last.
fn chain(n: usize) -> Vec<Block> {
    let mut out = Vec::with_capacity(n);
    out.push(Event::genesis("a deep stream").encode().unwrap());
    for i in 1..n {
        let parent = *out[i - 1].cid();
        out.push(Event::new(i as u64, vec![parent], i as u64).encode().unwrap());
    }
    out
}

fn key(dag: &Dag, cid: &Cid) -> (u64, Vec<u8>) {
    (dag.height(dag.id(cid).unwrap()), cid.to_bytes())
}

#[test]
fn chain_of_100_000_events() {
    let blocks = chain(CHAIN);
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    let (genesis, head) = (cids[0], cids[CHAIN - 1]);

    let mut dag = Dag::new(genesis);
    for (i, c) in cids.iter().enumerate().skip(1) {
        dag.insert(c, i as u64, &[cids[i - 1]]).unwrap();
    }
    assert_eq!(dag.len(), CHAIN);
    assert_eq!(dag.heads(), vec![head]);
    assert_eq!(dag.height(dag.id(&head).unwrap()), (CHAIN - 1) as u64);

    // The order is the chain itself: ascending heights, each parent before its child.
    let ord: Vec<Cid> = dag.order().map(|id| dag.cid(id)).collect();
    assert_eq!(ord.len(), CHAIN);
    assert_eq!(ord, cids);
    for w in ord.windows(2) {
        assert!(key(&dag, &w[0]) < key(&dag, &w[1]));
    }

    // Clock comparison and ancestry across the whole depth, both ways.
    assert_eq!(dag.compare(&[genesis], &[head]).unwrap(), ClockOrder::Before);
    assert_eq!(dag.compare(&[head], &[genesis]).unwrap(), ClockOrder::After);
    assert_eq!(dag.compare(&[head], &[head]).unwrap(), ClockOrder::Equal);
    assert_eq!(dag.compare(&[cids[10]], &[cids[CHAIN - 10]]).unwrap(), ClockOrder::Before);
    assert!(dag.is_ancestor(&genesis, &head).unwrap());
    assert!(!dag.is_ancestor(&head, &genesis).unwrap());

    // The difference is everything above the known event, in order.
    let diff = dag.difference(&[head], &[genesis]).unwrap();
    assert_eq!(diff.len(), CHAIN - 1);
    assert!(diff.iter().map(|&id| dag.cid(id)).eq(cids[1..].iter().copied()));
    let all = dag.difference(&[head], &[]).unwrap();
    assert_eq!(all.len(), CHAIN);
    let top = dag.difference(&[head], &[cids[CHAIN - 4]]).unwrap();
    assert!(top.iter().map(|&id| dag.cid(id)).eq(cids[CHAIN - 3..].iter().copied()));
    assert!(dag.difference(&[genesis], &[head]).unwrap().is_empty());

    // The pure functions over the same blocks agree.
    let set = BlockSet::from_blocks(blocks).unwrap();
    assert_eq!(heads(&set), vec![head]);
    assert_eq!(order(&set), cids);
}

#[test]
fn one_thousand_concurrent_heads_and_a_merge() {
    let g = Event::genesis("a wide stream").encode().unwrap();
    let genesis = *g.cid();
    let children: Vec<Block> = (0..WIDE as u32).map(|i| Event::new(1, vec![genesis], i).encode().unwrap()).collect();
    let mut dag = Dag::new(genesis);
    for c in &children {
        dag.insert(c.cid(), 1, &[genesis]).unwrap();
    }
    let mut sorted: Vec<Cid> = children.iter().map(|b| *b.cid()).collect();
    sorted.sort_by_key(|c| c.to_bytes());
    assert_eq!(dag.head_count(), WIDE);
    assert_eq!(dag.heads(), sorted);

    // Concurrent halves, and each half before the whole.
    let (left, right) = sorted.split_at(WIDE / 2);
    assert_eq!(dag.compare(left, right).unwrap(), ClockOrder::Concurrent);
    assert_eq!(dag.compare(left, &sorted).unwrap(), ClockOrder::Before);
    assert_eq!(dag.compare(&sorted, right).unwrap(), ClockOrder::After);
    assert_eq!(dag.compare(&[genesis], left).unwrap(), ClockOrder::Before);

    // One merge event takes all 1,000 heads as parents (within the 1,024 limit).
    let merge = Event::new(2, sorted.clone(), "merge").encode().unwrap();
    let decoded: Event<String> = Event::decode(&merge).unwrap();
    assert_eq!(decoded.parents(), &sorted[..]);
    dag.insert(merge.cid(), 2, decoded.parents()).unwrap();
    assert_eq!(dag.heads(), vec![*merge.cid()]);
    assert_eq!(dag.compare(&sorted, &[*merge.cid()]).unwrap(), ClockOrder::Before);
    assert_eq!(dag.compare(&[*merge.cid()], left).unwrap(), ClockOrder::After);
    let mut with_genesis = sorted.clone();
    with_genesis.push(genesis);
    assert_eq!(dag.compare(&with_genesis, &[*merge.cid()]).unwrap(), ClockOrder::Before);
    assert_eq!(dag.compare(&with_genesis, &sorted).unwrap(), ClockOrder::Equal);
    assert!(dag.is_ancestor(&genesis, merge.cid()).unwrap());
    assert!(dag.is_ancestor(&sorted[WIDE - 1], merge.cid()).unwrap());
    assert_eq!(dag.difference(&[*merge.cid()], left).unwrap().len(), WIDE / 2 + 1);

    // The order: genesis, the 1,000 children by CID bytes, the merge.
    let ord: Vec<Cid> = dag.order().map(|id| dag.cid(id)).collect();
    let mut want = vec![genesis];
    want.extend_from_slice(&sorted);
    want.push(*merge.cid());
    assert_eq!(ord, want);

    let mut all = vec![g, merge.clone()];
    all.extend(children);
    let set = BlockSet::from_blocks(all).unwrap();
    assert_eq!(heads(&set), vec![*merge.cid()]);
    assert_eq!(order(&set), want);
}
