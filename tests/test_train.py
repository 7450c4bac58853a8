"""Fine-tuning: reproducible with a seed, masks hold through training, every task kind trains."""
import pytest
import torch

from minilth.errors import MinilthError
from minilth.lottery.baselines import random_prune
from minilth.prune import Mask, prunable_names, snapshot
from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.train import choose_device, evaluate, finetune, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer


@pytest.fixture(scope="module")
def rte(tiny_checkpoint, glue_dir):
    tokenizer = load_tokenizer(tiny_checkpoint)
    task = get_task("rte")
    train = load_dataset(task, glue_dir, "train", tokenizer, max_examples=32)
    dev = load_dataset(task, glue_dir, task.eval_split, tokenizer, max_examples=32)
    return task, train, dev


def run(tiny_checkpoint, task, train, dev, seed=0, **kwargs):
    model = model_for_task(tiny_checkpoint, task, seed=seed)
    history = finetune(model, task, train, dev, seed=seed, epochs=2, batch_size=8, progress=False,
                       device="cpu", **kwargs)
    return model, history


def test_same_seed_same_numbers_on_cpu(tiny_checkpoint, rte):
    _, first = run(tiny_checkpoint, *rte, seed=3)
    _, second = run(tiny_checkpoint, *rte, seed=3)
    _, other = run(tiny_checkpoint, *rte, seed=4)
    assert first.losses == second.losses and first.epochs == second.epochs
    assert first.losses != other.losses
    assert len(first.losses) == first.steps == 8 and len(first.epochs) == 2
    assert set(first.final) == {"acc", "acc_se", "acc_chance"}


def test_mask_holds_after_every_step(tiny_checkpoint, rte):
    task, train, dev = rte
    model = model_for_task(tiny_checkpoint, task, seed=0)
    mask = random_prune(model, Mask.dense(model, prunable_names(model)), 0.5, seed=0)
    pruned_nonzero = []

    def check(step, model):
        params = dict(model.named_parameters())
        pruned_nonzero.append(sum(int(params[n][~m].ne(0).sum()) for n, m in mask.items()))

    finetune(model, task, train, dev, epochs=1, batch_size=8, weight_decay=0.01, mask=mask, on_step=check,
             progress=False, device="cpu")
    assert pruned_nonzero == [0, 0, 0, 0]
    kept = dict(model.named_parameters())["bert.encoder.layer.0.attention.self.query.weight"]
    assert kept[mask["bert.encoder.layer.0.attention.self.query.weight"]].ne(0).all()


def test_snapshot_is_theta_i_the_weights_after_step_i(tiny_checkpoint, rte):
    """snapshot_at=0.5 of 4 steps keeps the weights after step 2, bit for bit: not those after step 1 or 3."""
    task, train, _ = rte
    model = model_for_task(tiny_checkpoint, task, seed=0)
    after_step = {}
    history = finetune(model, task, train, None, epochs=1, batch_size=8, snapshot_at=0.5, progress=False,
                       device="cpu", on_step=lambda step, model: after_step.__setitem__(step, snapshot(model)))
    assert history.steps == 4 and history.snapshot_step == 2
    assert history.snapshot.keys() == after_step[2].keys()
    assert all(torch.equal(history.snapshot[name], after_step[2][name]) for name in after_step[2])
    name = "bert.encoder.layer.1.output.dense.weight"
    assert not torch.equal(after_step[1][name], after_step[2][name])  # each step moves it: the steps differ
    assert not torch.equal(after_step[3][name], after_step[2][name])


def test_regression_trains_and_learns(tiny_checkpoint, glue_dir):
    task = get_task("stsb")
    tokenizer = load_tokenizer(tiny_checkpoint)
    train = load_dataset(task, glue_dir, "train", tokenizer, max_examples=32)
    model = model_for_task(tiny_checkpoint, task, seed=0)
    history = finetune(model, task, train, train, epochs=6, batch_size=8, learning_rate=1e-3, progress=False,
                       device="cpu")
    assert set(history.final) >= {"pearson", "spearman"}
    assert sum(history.losses[-4:]) < sum(history.losses[:4])


def test_bf16_autocast_on_cpu_trains_like_fp32(tiny_checkpoint, rte):
    _, fp32 = run(tiny_checkpoint, *rte)
    _, bf16 = run(tiny_checkpoint, *rte, precision="bf16")
    assert bf16.losses != fp32.losses  # autocast really ran in bf16 ...
    # ... and bf16's 8-bit mantissa moves each loss by about 1%, not more
    assert all(abs(a - b) < 0.02 * abs(b) + 0.01 for a, b in zip(bf16.losses, fp32.losses, strict=True))


def test_bad_device_and_precision(tiny_checkpoint, rte):
    with pytest.raises(MinilthError, match="fp16 needs a CUDA GPU"):
        run(tiny_checkpoint, *rte, precision="fp16")
    with pytest.raises(MinilthError, match="unknown precision"):
        run(tiny_checkpoint, *rte, precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(MinilthError, match="no CUDA GPU"):
            choose_device("cuda")


def test_evaluate_is_deterministic(tiny_checkpoint, rte):
    task, train, dev = rte
    model = model_for_task(tiny_checkpoint, task, seed=0)
    assert evaluate(model, task, dev, device="cpu") == evaluate(model, task, dev, eval_batch_size=7, device="cpu")


def test_a_run_rewound_to_step_i_continues_the_schedule_and_the_batch_order(tiny_checkpoint, rte):
    """open_lth and Frankle et al.: training from theta_i goes on from step i, with a fresh optimiser."""
    task, train, _ = rte

    def run_from(start_step):
        model = model_for_task(tiny_checkpoint, task, seed=0)
        seen, forward = [], model.forward
        model.forward = lambda **batch: seen.append(batch["input_ids"].clone()) or forward(**batch)
        history = finetune(model, task, train, None, epochs=2, batch_size=8, warmup_ratio=0.25, seed=2,
                           start_step=start_step, progress=False, device="cpu")
        return history, seen

    (full, full_batches), (resumed, resumed_batches) = run_from(0), run_from(3)
    assert full.steps == resumed.steps == 8 and len(resumed.losses) == 5
    assert full.learning_rates[0] == 0.0 and max(full.learning_rates) == pytest.approx(task.learning_rate)
    assert resumed.learning_rates == full.learning_rates[3:]  # not a new schedule from 0
    assert all(torch.equal(a, b) for a, b in zip(resumed_batches, full_batches[3:], strict=True))
    with pytest.raises(MinilthError, match="outside this fine-tuning's 8 steps"):
        run_from(8)


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    """A CPU without AVX-512 BF16 or AMX emulates bf16 matrix products, many times slower than fp32: there the
    classroom preset's "auto" trains in fp32."""
    import torch

    from minilth.config import TicketConfig
    from minilth.train import autocast, native_precision
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert native_precision(cpu) == ("bf16" if native else "fp32")
    assert TicketConfig.preset("classroom").precision == "auto"
    with autocast(cpu, "auto"):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if native else torch.float32)
