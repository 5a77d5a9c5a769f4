//! The store contract suite (`merkle_clock::store::contract`) against the JS
//! blockstore adapter, for `test/store_contract.test.mjs`: built only with
//! the `testing` feature, into `wasm/pkg/testing` (never the package's
//! `pkg/node` and `pkg/web`).

use js_sys::{Array, Promise};
use merkle_clock::store::contract;
use wasm_bindgen::prelude::*;

use crate::errors::error;
use crate::spawn::promise;
use crate::store::JsStore;

/// Every rule, by name: the `Blockstore` rules, then the `StreamStore` ones.
const RULES: [&str; 10] = [
    "get_of_a_missing_block_is_none",
    "get_returns_what_put_stored",
    "putting_a_block_again_changes_nothing",
    "get_many_answers_every_cid_in_order",
    "empty_batches_are_fine",
    "an_unknown_stream_has_no_heads_and_no_log",
    "commit_stores_blocks_appends_the_log_and_replaces_heads",
    "streams_are_separate_and_may_share_blocks",
    "read_log_is_cut_only_by_the_end_of_the_log",
    "each_commit_replaces_the_heads",
];

/// The names of the contract's rules.
#[wasm_bindgen(js_name = storeContractRules)]
pub fn store_contract_rules() -> Array {
    RULES.iter().map(|r| JsValue::from_str(r)).collect()
}

/// Runs one rule on a store over `adapter` (fresh and empty). Rejects with a
/// `MerkleClockError` of code `contract` and the violation.
#[wasm_bindgen(js_name = storeContractRule)]
pub fn store_contract_rule(rule: String, adapter: JsValue) -> Promise {
    let store = JsStore::new(adapter);
    promise(async move {
        let store = store?;
        let outcome = match rule.as_str() {
            "get_of_a_missing_block_is_none" => contract::get_of_a_missing_block_is_none(&store).await,
            "get_returns_what_put_stored" => contract::get_returns_what_put_stored(&store).await,
            "putting_a_block_again_changes_nothing" => contract::putting_a_block_again_changes_nothing(&store).await,
            "get_many_answers_every_cid_in_order" => contract::get_many_answers_every_cid_in_order(&store).await,
            "empty_batches_are_fine" => contract::empty_batches_are_fine(&store).await,
            "an_unknown_stream_has_no_heads_and_no_log" => {
                contract::an_unknown_stream_has_no_heads_and_no_log(&store).await
            }
            "commit_stores_blocks_appends_the_log_and_replaces_heads" => {
                contract::commit_stores_blocks_appends_the_log_and_replaces_heads(&store).await
            }
            "streams_are_separate_and_may_share_blocks" => {
                contract::streams_are_separate_and_may_share_blocks(&store).await
            }
            "read_log_is_cut_only_by_the_end_of_the_log" => {
                contract::read_log_is_cut_only_by_the_end_of_the_log(&store).await
            }
            "each_commit_replaces_the_heads" => contract::each_commit_replaces_the_heads(&store).await,
            other => Err(format!("no contract rule named {other:?}")),
        };
        outcome.map(|()| JsValue::UNDEFINED).map_err(|v| error("contract", v))
    })
}
