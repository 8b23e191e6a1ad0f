"""The one training loop (iwlab.train.fit): evaluation schedule, resume, RNG, divergence policies, the
checkpoint format, progress and clocks, on a toy job whose numbers are known exactly."""

import pytest
import torch

from iwlab.train.fit import FORMAT, Clock, FitState, checkpoint_dict, fit


class Walk:
    """M random walks: each epoch adds a draw of torch's global RNG (if asked) or of its own generator."""

    def __init__(self, M=2, global_rng=True, blow_up_at=None, seed=0):
        self.M = M
        self.uses_global_rng = global_rng
        self.g = torch.Generator().manual_seed(seed)
        self.value = torch.zeros(M, dtype=torch.float64)
        self.blow_up_at = blow_up_at or {}
        self.frozen = torch.zeros(M, dtype=torch.bool)
        self.evaluated = []

    def spec(self):
        return {"M": self.M, "global_rng": self.uses_global_rng}

    def training_state(self):
        return {"value": self.value.clone(), "g": self.g.get_state(), "frozen": self.frozen.clone()}

    def load_training_state(self, state):
        self.value, self.frozen = state["value"].clone(), state["frozen"].clone()
        self.g.set_state(state["g"])

    def train_epoch(self, epoch, clock):
        clock.start()
        step = (
            torch.rand(self.M, dtype=torch.float64)
            if self.uses_global_rng
            else torch.rand(self.M, dtype=torch.float64, generator=self.g)
        )
        self.value += torch.where(self.frozen, 0.0, step)
        for i, e in self.blow_up_at.items():
            if e == epoch:
                self.value[i] = float("nan")
        clock.stop("training")
        return {"step_sum": step}

    def finite(self):
        return torch.isfinite(self.value)

    def freeze(self, members):
        self.frozen |= members

    def evaluate(self, epoch):
        self.evaluated.append(epoch)
        return {"value": self.value.clone()}


def test_records_at_eval_epochs_in_long_form():
    job = Walk(global_rng=False)
    run = fit(job, epochs=5, eval_epochs=[2, 5])
    assert job.evaluated == [2, 5] and run.epoch == 5
    assert [(e, m, n) for e, m, n, _ in run.rows] == [
        (2, 0, "value"),
        (2, 1, "value"),
        (5, 0, "value"),
        (5, 1, "value"),
    ]
    # the recorded values are the job's at that epoch, in float64
    ref = torch.zeros(2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ref += torch.rand(2, dtype=torch.float64, generator=g)
    assert [v for e, _, _, v in run.rows if e == 5] == ref.tolist()
    assert run.clock["training"] >= 0 and run.diverged_at == [-1, -1]


def test_record_training_adds_the_epoch_statistics_every_epoch():
    run = fit(Walk(global_rng=False), epochs=3, eval_epochs=[3], record_training=True)
    assert [(e, n) for e, m, n, _ in run.rows if m == 0] == [
        (1, "step_sum"),
        (2, "step_sum"),
        (3, "step_sum"),
        (3, "value"),
    ]


@pytest.mark.parametrize("global_rng", [True, False])
@pytest.mark.parametrize("every", ["eval", "every"])
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path, global_rng, every):
    torch.manual_seed(123)
    straight = fit(Walk(global_rng=global_rng), epochs=6, eval_epochs=[1, 3, 6])
    ckpt = tmp_path / "c.pt"
    torch.manual_seed(123)
    fit(Walk(global_rng=global_rng), epochs=3, eval_epochs=[1, 3], checkpoint_path=ckpt, checkpoint_epochs=every)
    torch.manual_seed(999)  # the interrupted process's RNG is gone: the checkpoint must carry it
    job = Walk(global_rng=global_rng)
    resumed = fit(job, epochs=6, eval_epochs=[1, 3, 6], checkpoint_path=ckpt, checkpoint_epochs=every)
    assert resumed.rows == straight.rows
    assert job.evaluated == [6]  # epochs 1-3 were not rerun


def test_checkpoint_has_the_one_format(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(Walk(), epochs=2, eval_epochs=[2], checkpoint_path=ckpt)
    state = torch.load(ckpt, weights_only=False)
    assert state["format"] == FORMAT and state["epoch"] == 2
    assert set(state) == {
        "format",
        "kind",
        "epoch",
        "spec",
        "rows",
        "diverged_at",
        "clock",
        "on_diverged",
        "job",
        "rng",
    }
    assert state["spec"] == {"M": 2, "global_rng": True} and state["rng"]["cpu"].dtype == torch.uint8
    again = checkpoint_dict(Walk(global_rng=False), FitState(epoch=2))
    assert again["rng"] is None and again["job"]["value"].shape == (2,)


def test_checkpoint_of_other_settings_or_format_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(Walk(M=2), epochs=2, eval_epochs=[2], checkpoint_path=ckpt)
    with pytest.raises(ValueError, match=r"was made with M=2; this run has M=3"):
        fit(Walk(M=3), epochs=4, eval_epochs=[4], checkpoint_path=ckpt)
    torch.save({"epoch": 2, "model": {}}, ckpt)  # another program's (or an older iwlab's) checkpoint
    with pytest.raises(ValueError, match="not an iwlab training checkpoint"):
        fit(Walk(M=2), epochs=4, eval_epochs=[4], checkpoint_path=ckpt)


def test_checkpoint_past_the_requested_epochs_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(Walk(), epochs=4, eval_epochs=[4], checkpoint_path=ckpt)
    with pytest.raises(ValueError, match="is at epoch 4 but epochs=2 was asked for"):
        fit(Walk(), epochs=2, eval_epochs=[2], checkpoint_path=ckpt)


def test_divergence_freeze_records_the_epoch_and_keeps_the_others_going():
    job = Walk(global_rng=False, blow_up_at={1: 2})
    run = fit(job, epochs=4, eval_epochs=[1, 2, 4])
    assert run.diverged_at == [-1, 2] and bool(job.frozen[1]) and not bool(job.frozen[0])
    # NaN means "not defined for this member": not recorded; member 0 goes on
    assert [(e, m) for e, m, _, _ in run.rows] == [(1, 0), (1, 1), (2, 0), (4, 0)]


def test_divergence_stop_records_nothing_from_then_on_and_resume_stays_stopped(tmp_path):
    ckpt = tmp_path / "c.pt"
    kw = dict(epochs=4, eval_epochs=[1, 2, 3, 4], on_diverged="stop", checkpoint_path=ckpt)
    run = fit(Walk(M=1, blow_up_at={0: 2}), **kw)
    assert run.epoch == 2 and run.diverged_at == [2] and [e for e, *_ in run.rows] == [1]
    job = Walk(M=1)
    again = fit(job, **kw)
    assert again.rows == run.rows and job.evaluated == []


def test_divergence_raise():
    with pytest.raises(FloatingPointError, match=r"members \[0\] stopped being finite in epoch 3"):
        fit(Walk(M=1, blow_up_at={0: 3}), epochs=4, eval_epochs=[4], on_diverged="raise")


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(epochs=0, eval_epochs=[]), ValueError, "epochs"),
        (dict(epochs=2.0, eval_epochs=[]), TypeError, "epochs"),
        (dict(epochs=3, eval_epochs=[4]), ValueError, "lies past epochs=3"),
        (dict(epochs=3, eval_epochs=[0]), ValueError, "eval_epochs"),
    ],
)
def test_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        fit(Walk(), **kw)


def test_metric_with_the_wrong_number_of_values_is_refused():
    class Bad(Walk):
        def evaluate(self, epoch):
            return {"x": torch.zeros(3)}

    with pytest.raises(ValueError, match="metric 'x' returned 3 values for 2 members"):
        fit(Bad(), epochs=1, eval_epochs=[1])


def test_progress_callback_sees_every_epoch():
    seen = []
    fit(Walk(), epochs=3, eval_epochs=[3], progress=lambda e, n: seen.append((e, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_clock_charges_phases():
    c = Clock("cpu", {"scoring": 1.0})
    c.start()
    dt = c.stop("scoring")
    assert c.totals["scoring"] == pytest.approx(1.0 + dt) and dt >= 0


# --- bad inputs found by the hunt after the refactor: each refused with one line ----------------------


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(on_diverged="Stop"), ValueError, "on_diverged must be one of"),
        (dict(checkpoint_epochs="all"), ValueError, "checkpoint_epochs must be one of"),
        (dict(progress=1), TypeError, "progress must be True, False or a callable"),
        (dict(progress="yes"), TypeError, "progress must be True, False or a callable"),
        (dict(run=FitState(epoch=-3)), ValueError, "epoch must be an integer >= 0"),
        (dict(run=FitState(epoch=True)), TypeError, "epoch"),
        (dict(run=FitState(diverged_at=[-1, 4, -1])), ValueError, "one epoch per member"),
    ],
)
def test_loop_arguments_are_checked(kw, err, match):
    with pytest.raises(err, match=match):
        fit(Walk(), epochs=3, eval_epochs=[3], **kw)


def _rewrite(path, **fields):
    state = torch.load(path, weights_only=False)
    for k, v in fields.items():
        if v is KeyError:
            del state[k]
        else:
            state[k] = v
    torch.save(state, path)


@pytest.mark.parametrize(
    "fields, err, match",
    [
        (dict(epoch=-1), ValueError, "epoch must be an integer >= 0"),
        (dict(epoch=True), TypeError, "epoch"),
        (dict(epoch=2.7), TypeError, "epoch"),
        (dict(diverged_at=[]), ValueError, "one epoch per member"),
        (dict(rows="abc"), TypeError, "rows must be a list"),
        (dict(clock=None), TypeError, "clock must be a dict"),
        (dict(rows=KeyError), ValueError, "lacks rows"),
        (dict(job=KeyError), ValueError, "lacks job"),
        (dict(kind="EnsembleTrainer"), ValueError, "was made by a EnsembleTrainer job; this run is a Walk"),
    ],
)
def test_damaged_loop_fields_of_a_checkpoint_are_refused(tmp_path, fields, err, match):
    ckpt = tmp_path / "c.pt"
    fit(Walk(), epochs=2, eval_epochs=[2], checkpoint_path=ckpt)
    _rewrite(ckpt, **fields)
    with pytest.raises(err, match=match):
        fit(Walk(), epochs=3, eval_epochs=[3], checkpoint_path=ckpt)


def test_a_stopped_run_cannot_resume_under_another_divergence_policy(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(Walk(M=1, blow_up_at={0: 2}), epochs=3, eval_epochs=[1, 2, 3], checkpoint_path=ckpt, on_diverged="stop")
    with pytest.raises(ValueError, match="trained with on_diverged=stop; this run has on_diverged=continue"):
        fit(Walk(M=1), epochs=6, eval_epochs=[6], checkpoint_path=ckpt, on_diverged="continue")


@pytest.mark.parametrize(
    "value, err, match",
    [
        (0.5, TypeError, "must be a tensor of 2 values"),
        ([0.5, 0.5], TypeError, "must be a tensor of 2 values"),
        (torch.zeros(2, dtype=torch.complex64), TypeError, "must be real numbers"),
        (torch.zeros(2, 1), None, None),  # (M, 1) is M values
    ],
)
def test_metric_values_must_be_real_numbers_one_per_member(value, err, match):
    class Metric(Walk):
        def evaluate(self, epoch):
            return {"m": value}

    if err is None:
        assert len(fit(Metric(), epochs=1, eval_epochs=[1]).rows) == 2
    else:
        with pytest.raises(err, match=match):
            fit(Metric(), epochs=1, eval_epochs=[1])


def test_single_member_metric_must_be_a_number():
    class Text(Walk):
        def evaluate(self, epoch):
            return {"m": "0.5"}

    with pytest.raises(TypeError, match="metric 'm'"):
        fit(Text(M=1), epochs=1, eval_epochs=[1])


def test_keep_nan_records_nan_values():
    class Nan(Walk):
        def evaluate(self, epoch):
            return {"m": float("nan")}

    assert fit(Nan(M=1), epochs=1, eval_epochs=[1]).rows == []
    (row,) = fit(Nan(M=1), epochs=1, eval_epochs=[1], keep_nan=True).rows
    assert row[:3] == (1, 0, "m") and row[3] != row[3]
