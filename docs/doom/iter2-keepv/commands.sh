#!/bin/bash
# Doom lever (docs/doom.md; its rule was fixed before any result): iterative round 1 keeping round 0's V;
# round 0 = runs/doom-s2x-seed<s> (docs/doom/searches2). Round 1's rollouts are shared with the full-V round
# (docs/doom/iter2). Resumable: rerun the same command. Used for seeds 1 and 0: bash commands.sh 1, bash commands.sh 0
cd "$(dirname "$0")/../../.."; s=$1; R0=runs/doom-s2x-seed$s; F=runs/doom-r2-seed$s; P=runs/doom-r2k-seed$s; PY=.venv/bin/python
mkdir -p $F/round0 $P/rollouts
for d in vae mdrnn ctrl; do [ -e $F/round0/$d ] || ln -s $R0/$d $F/round0/$d; done
echo "=== round 1 rollouts $(date)"
[ -f $F/rollouts/round1/rollout_000999.npz ] || $PY data/generation_script.py --env doom-takecover --policy controller --logdir $F/round0 --noise 0.1 --rollouts 1000 --rootdir $F/rollouts/round1 --threads 2 --max-steps 2100 --seed $((s+1)) || exit 1
[ -d $P/vae ] || { rm -rf $P/vae.tmp; cp -al $R0/vae $P/vae.tmp && mv $P/vae.tmp $P/vae; }
for r in round0:$R0/rollouts round1:$F/rollouts/round1; do n=${r%%:*}; src=${r#*:}
  [ -d $P/rollouts/$n ] || { rm -rf $P/rollouts/$n.tmp; cp -al $src $P/rollouts/$n.tmp && rm -rf $P/rollouts/$n.tmp/.cache $P/rollouts/$n.tmp/.lock && mv $P/rollouts/$n.tmp $P/rollouts/$n; }; done
echo "=== M $(date)"
$PY trainmdrnn.py --logdir $P --dataset $P/rollouts --epochs 20 --batch-size 32 --seq-len 100 --seed $s || exit 1
echo "=== C $(date)"
$PY traincontroller.py --logdir $P --pop-size 32 --sigma 0.1 --n-samples 16 --generations 100 --eval-every 10 --eval-episodes 16 --confirm-episodes 0 --searches 1 --train-max-steps 2100 --negative-cutoff 0 --weight-penalty 0.01 --renderer 160x120 --max-workers 2 --max-steps 2100 --z-mode sample --seed $s --dream --temperature 1.15 --dream-steps 2100 || exit 1
echo "=== test $(date)"
[ -f $P/test8/test_returns.json ] || $PY test_controller.py --logdir $P --episodes 100 --seed 8 --z-mode sample --max-steps 2100 --renderer 160x120 --out $P/test8
echo "=== done $(date)"
