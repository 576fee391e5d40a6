//! Reading the flow slots: each CPU's per-epoch cache of the flows it counts without the hash
//! map (see "Flow slots" in `ebpf/flowrec.bpf.c`). A slot is read once, when its epoch has
//! ended; it is never cleared, because the programs treat a slot of an older epoch as free.

use aya::maps::{MapData, MapError, PerCpuArray};

use super::layout::{FlowMap, FlowSlot, FlowStats};

/// The flows that held a slot on some CPU in `epoch`, each with one copy of its counters per
/// CPU whose slot it held: copies to merge like a hash map entry's per-CPU copies.
pub fn claimed(
    slots: &PerCpuArray<MapData, FlowSlot>,
    epoch: u32,
) -> Result<FlowMap<Vec<FlowStats>>, MapError> {
    let mut flows = FlowMap::<Vec<FlowStats>>::default();
    for index in 0..slots.len() {
        for slot in slots.get(&index, 0)?.iter() {
            if slot.epoch == epoch && slot.stats.first_seen_ns != 0 {
                flows.entry(slot.key).or_default().push(slot.stats);
            }
        }
    }
    Ok(flows)
}
