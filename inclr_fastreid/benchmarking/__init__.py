"""What the measuring scripts share (benchmarks/, and tools/cluster_quality.py): synthetic clustered
features at a real target's size (:mod:`.features`), rendered target items (:mod:`.rendered`), process
memory readings (:mod:`.memory`) and DBSCAN's eps rules scored side by side against the labels
(:mod:`.eps_rules`). Nothing here runs in training.
"""
