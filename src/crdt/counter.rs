//! A counter of increments and decrements.
//!
//! The rule is documented on [`Counter`] (this module is private).

use serde::{Deserialize, Serialize};

use ipld_core::ipld::Ipld;

use super::fold::{FoldEvent, OrderInsensitive, Reducer};
use super::resume::{Resumable, StateError, from_cbor, to_cbor};

/// An operation on a [`Counter`].
///
/// DAG-CBOR representation (serde's externally tagged enum; pinned by tests):
/// `{"increment": n}` or `{"decrement": n}`, `n` an unsigned integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterOp {
    /// Adds `n`.
    Increment(u64),
    /// Subtracts `n`.
    Decrement(u64),
}

/// A counter of increments and decrements. Payloads are [`CounterOp`]; the
/// state is an `i128`.
///
/// **Conflict rule:** there is none to resolve: the value is the sum of all
/// increments minus all decrements, whatever their order, so concurrent
/// updates all count. The sum is kept in an `i128` with wrapping arithmetic,
/// which is commutative and associative (saturating arithmetic would not
/// be); it cannot wrap before 2^63 events of the largest amount. The reducer
/// is [`OrderInsensitive`]: run it under a [`CausalFeed`](super::CausalFeed)
/// (cheapest) or a [`Fold`](super::Fold).
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{CausalFeed, Counter, CounterOp};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("stock").encode()?;
/// let mut a = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut b = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let x = a.append(&CounterOp::Increment(10)).await?;
/// let y = b.append(&CounterOp::Decrement(3)).await?; // concurrent
/// a.ingest(b.get(&y).await?.expect("present")).await?;
/// b.ingest(a.get(&x).await?.expect("present")).await?;
/// let (mut fa, mut fb) = (CausalFeed::new(Counter), CausalFeed::new(Counter));
/// fa.update(&a).await?;
/// fb.update(&b).await?;
/// assert_eq!((*fa.state(), *fb.state()), (7, 7)); // delivered in different orders
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter;

impl Reducer for Counter {
    type Payload = CounterOp;
    type State = i128;

    fn init(&self) -> i128 {
        0
    }

    fn apply(&self, state: &mut i128, event: &FoldEvent<CounterOp>) {
        match event.payload {
            CounterOp::Increment(n) => *state = state.wrapping_add(i128::from(n)),
            CounterOp::Decrement(n) => *state = state.wrapping_sub(i128::from(n)),
        }
    }
}

impl OrderInsensitive for Counter {}

/// State block: the sum as one DAG-CBOR integer (a sum outside
/// `-2^64..2^64` cannot be saved: [`StateError::Encode`]).
impl Resumable for Counter {
    fn save(&self, state: &i128) -> Result<Vec<u8>, StateError> {
        if !(-(1i128 << 64)..(1i128 << 64)).contains(state) {
            return Err(StateError::Encode(format!("{state} is outside the DAG-CBOR integer range")));
        }
        to_cbor(&Ipld::Integer(*state))
    }

    fn load(&self, bytes: &[u8]) -> Result<i128, StateError> {
        match from_cbor::<Ipld>(bytes)? {
            Ipld::Integer(n) => Ok(n),
            other => Err(StateError::Decode(format!("a counter is an integer, not {other:?}"))),
        }
    }
}
