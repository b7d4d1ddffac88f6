"""A resume with new optimizer settings keeps its place in the schedule, on the new base.

Lightning restores the checkpoint's param groups and base learning rates over the command line's;
``ResumeSettings`` sets today's back and rescales the current lr by new base / old base.
"""

from types import SimpleNamespace

import pytest
import torch

from seg.checkpoint import ResumeSettings


def optimizer(
    lr: float, momentum: float
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with a weight group at lr and a bias group at 2 lr, and a linear decay over 10 steps."""
    weight, bias = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(1))
    groups = [{"params": [weight]}, {"params": [bias], "lr": 2 * lr}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 - it / 10)


def test_a_lower_lr_on_resume_rescales_the_current_lr_at_the_same_point_of_the_schedule():
    old_opt, old_schedule = optimizer(lr=0.1, momentum=0.9)
    for _ in range(3):  # three steps of the first run: lr 0.1 * (1 - 3/10)
        old_opt.step()
        old_schedule.step()
    assert [g["lr"] for g in old_opt.param_groups] == pytest.approx([0.07, 0.14])
    saved = old_opt.state_dict(), old_schedule.state_dict()

    opt, schedule = optimizer(lr=0.01, momentum=0.95)  # the resumed run's command line
    trainer = SimpleNamespace(
        ckpt_path="last.ckpt",
        optimizers=[opt],
        lr_scheduler_configs=[SimpleNamespace(scheduler=schedule)],
    )
    settings = ResumeSettings()
    settings.on_fit_start(trainer, None)  # before Lightning restores the checkpoint
    opt.load_state_dict(saved[0])
    schedule.load_state_dict(saved[1])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.07, 0.14])  # the old run's
    settings.on_train_start(trainer, None)
    groups = opt.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.007, 0.014])  # 0.01 * (1 - 3/10)
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.01, 0.02])
    assert [g["momentum"] for g in groups] == [0.95, 0.95]
    assert schedule.base_lrs == pytest.approx([0.01, 0.02])
    opt.step()
    schedule.step()  # the schedule goes on from step 3 on the new base
    assert [g["lr"] for g in groups] == pytest.approx([0.006, 0.012])


def test_a_fresh_run_is_left_alone():
    opt, schedule = optimizer(lr=0.01, momentum=0.9)
    trainer = SimpleNamespace(
        ckpt_path=None, optimizers=[opt], lr_scheduler_configs=[SimpleNamespace(scheduler=schedule)]
    )
    settings = ResumeSettings()
    settings.on_fit_start(trainer, None)
    settings.on_train_start(trainer, None)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.02])
