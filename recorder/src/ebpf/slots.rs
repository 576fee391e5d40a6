//! Reading the flow slots: each CPU's per-epoch cache of the flows it counts without the hash
//! map (see "Flow slots" in `ebpf/flowrec.bpf.c`). A slot is read once, when its epoch has
//! ended; it is never cleared, because the programs treat a slot of an older epoch as free.

use aya::maps::{IterableMap, MapData, PerCpuArray};

use super::batch::{self, Reading};
use super::layout::{FlowMap, FlowSlot, FlowStats};
use super::{batch_error, map_error, CaptureError};

/// The flows that held a slot on some CPU in `epoch`, each with one copy of its counters per
/// CPU whose slot it held: copies to merge like a hash map entry's per-CPU copies. Read in
/// batches (one call instead of one per slot: a drain, even an idle one, reads every slot); one
/// call per slot on a kernel without batches.
pub fn claimed(
    slots: &PerCpuArray<MapData, FlowSlot>,
    epoch: u32,
) -> Result<FlowMap<Vec<FlowStats>>, CaptureError> {
    let mut flows = FlowMap::<Vec<FlowStats>>::default();
    let mut keep = |copies: &[FlowSlot]| {
        for slot in copies {
            if slot.epoch == epoch && slot.stats.first_seen_ns != 0 {
                flows.entry(slot.key).or_default().push(slot.stats);
            }
        }
    };
    let batched =
        batch::read_all::<u32, FlowSlot>(IterableMap::map(slots), Reading::Look, |_, copies| {
            keep(copies)
        })
        .map_err(batch_error("slots"))?;
    if !batched {
        for index in 0..slots.len() {
            keep(&slots.get(&index, 0).map_err(map_error("slots"))?);
        }
    }
    Ok(flows)
}
