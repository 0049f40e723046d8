#!/bin/bash
# SocNav lever: a second round (docs/socnav.md; its rule was fixed before any result): round 0 = the recipe's run of seed s; round 1 = 2000 rollouts of its C
# (noise 0.1, seed s+1), V, M on both sets, the recipe's fit, test --seed 0. Seeds 0 and 1 side by side, one core each.
cd "$(dirname "$0")/../../.."  # the repository root
one() {
  s=$1; R0=$2; R0DATA=$3; L=runs/socnav-r2-s$s
  export OMP_NUM_THREADS=1
  mkdir -p $L/rollouts
  if [ ! -d $L/rollouts/round0 ]; then cp -al $R0DATA $L/rollouts/round0.tmp && rm -rf $L/rollouts/round0.tmp/.cache && mv $L/rollouts/round0.tmp $L/rollouts/round0; fi
  .venv/bin/python data/generation_script.py --policy controller --logdir $R0 --noise 0.1 --rollouts 2000 --rootdir $L/rollouts/round1 --threads 1 --max-steps 200 --seed $((s+1)) > $L.log 2>&1 || return 1
  .venv/bin/python trainvae.py --logdir $L --dataset $L/rollouts --epochs 2 --batch-size 32 --lr 0.001 --workers 1 --salient-weight 10.0 --seed $s >> $L.log 2>&1 || return 1
  .venv/bin/python trainmdrnn.py --logdir $L --epochs 20 --batch-size 32 --seq-len 32 --seed $s >> $L.log 2>&1 || return 1
  [ -f $L/ctrl/best.tar ] || .venv/bin/python scripts/probe_socnav.py --logdir $L --episodes 150 --dagger 6 --teacher potential-field --units 256 --max-steps 200 --seed $s --save-c $L/ctrl/best.tar --out $L/imitation.json >> $L.log 2>&1 || return 1
  .venv/bin/python test_controller.py --logdir $L --episodes 100 --seed 0 --max-workers 1 --max-steps 200 --renderer 256x256 --z-mode mu > $L-test.log 2>&1
}
one 0 runs/socnav-ship-u256-d6 runs/socnav-gr10-s0/rollouts &
one 1 runs/socnav-s1-u256-d6 runs/socnav-s1-u256-d6/rollouts &
wait
echo done
