#!/bin/bash
# Doom lever: iterative training (docs/doom.md; its rule was fixed before any result): round 1 of
# scripts/demo.py --preset doom --rounds 2 by hand, round 0 = the two-search run of seed s (docs/doom/searches2).
# Resumable: rerun the same command. Used for seed 1: bash commands.sh 1
cd "$(dirname "$0")/../../../.."; s=$1; R0=runs/doom-s2x-seed$s; P=runs/doom-r2-seed$s; PY=.venv/bin/python
mkdir -p $P/round0 $P/rollouts
for d in vae mdrnn ctrl; do [ -e $P/round0/$d ] || ln -s $R0/$d $P/round0/$d; done
# a real directory of hard links (the rollout search followed no symlink before commit c088a31)
[ -d $P/rollouts/round0 ] || { rm -rf $P/rollouts/round0.tmp; cp -al $R0/rollouts $P/rollouts/round0.tmp && rm -rf $P/rollouts/round0.tmp/.cache && mv $P/rollouts/round0.tmp $P/rollouts/round0; }
echo "=== round 1 rollouts $(date)"
[ -f $P/rollouts/round1/rollout_000999.npz ] || $PY data/generation_script.py --env doom-takecover --policy controller --logdir $P/round0 --noise 0.1 --rollouts 1000 --rootdir $P/rollouts/round1 --threads 2 --max-steps 2100 --seed $((s+1)) || exit 1
echo "=== V $(date)"
$PY trainvae.py --logdir $P --dataset $P/rollouts --epochs 2 --batch-size 100 --lr 0.001 --workers 2 --salient-weight 1.0 --seed $s || exit 1
echo "=== M $(date)"
$PY trainmdrnn.py --logdir $P --epochs 20 --batch-size 32 --seq-len 100 --seed $s || exit 1
echo "=== C $(date)"
$PY traincontroller.py --logdir $P --pop-size 32 --sigma 0.1 --n-samples 16 --generations 100 --eval-every 10 --eval-episodes 16 --confirm-episodes 0 --searches 1 --train-max-steps 2100 --negative-cutoff 0 --weight-penalty 0.01 --renderer 160x120 --max-workers 2 --max-steps 2100 --z-mode sample --seed $s --dream --temperature 1.15 --dream-steps 2100 || exit 1
echo "=== test $(date)"
$PY test_controller.py --logdir $P --episodes 100 --seed 8 --z-mode sample --max-steps 2100 --renderer 160x120 --out $P/test8
echo "=== done $(date)"
