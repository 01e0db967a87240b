"""Issue 5 spread check, as run on an H100 (output: docs/benchmarks/models_spread.txt): NA-UNet, the size-matched
SwinUNETR (feature 36) and DiNAT-UNet, 3 rounds in one process, the order changed between rounds.

    PYTHONPATH=$PWD python docs/benchmarks/models_spread.py
"""
import sys

import torch

sys.path.insert(0, "tools")
import bench_models as bm
nat = bm.Case("nat_unet_small", "nat_unet_small")
swin = [bm.Case(l, n, dict(k)) for l, n, k in bm.BASELINES if "feature 36" in l][0]
dinat = bm.Case("dinat_unet_small", "dinat_unet_small")
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for rnd in range(3):
    for dims in (3, 2):
        for c in ((nat, swin, dinat) if rnd % 2 == 0 else (swin, dinat, nat)):
            s = bm.SETTINGS[dims]
            print(rnd, dims, bm.bench_case(c, dims, s["batch"], s["size"], torch.device("cuda"), False, False), flush=True)
