import numpy as np

from vnp.engine.store import FrameStore, FrameStoreWriter


def test_store_round_trips_batches_in_order(tmp_path):
    writer = FrameStoreWriter(tmp_path)
    frames = [(f"r{i}_chunk_1F{i % 3 + 1}", "ACGT" * (i % 7 + 1), "MK" * (i % 5 + 1)) for i in range(250)]
    frames[7] = ("säule_7_chunk_1F2", "ACG", "M")  # an ID that is not ASCII
    for start in range(0, 250, 64):
        block = frames[start : start + 64]
        writer.append(ids=[f[0] for f in block], nucleotides=[f[1] for f in block], proteins=[f[2] for f in block])
    writer.append(ids=[], nucleotides=[], proteins=[])  # an input batch without kept frames
    assert writer.close() == 250
    store = FrameStore(tmp_path)
    assert len(store) == 250
    picks = np.array([249, 0, 17])
    assert store.get("proteins", picks) == [frames[i][2] for i in picks]
    assert store.column("ids") == [f[0] for f in frames]  # non-ASCII: decoded frame by frame
    assert store.column("proteins") == [f[2] for f in frames]  # ASCII: one decode, sliced
    assert store.get("nucleotides", np.arange(250)) == [f[1] for f in frames]


def test_empty_store(tmp_path):
    assert FrameStoreWriter(tmp_path).close() == 0
    store = FrameStore(tmp_path)
    assert len(store) == 0
    assert store.column("ids") == []
