"""What every method shares: the net, optimiser and schedule, accuracy metrics, logging.

A method subclasses ``ClassificationModule`` and writes ``training_loss``: the objective it
optimises, as a dict of named terms whose ``loss`` entry is minimised. Evaluation (val and test)
is plain classification of the net's logits and lives here once: the datamodule declares its
evaluation loaders (``evaluation_routes``: which split of which domain, under which metric
prefix) and this base builds one set of metrics per route.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from transferlab.callbacks.confusion import ConfusionReport
from transferlab.callbacks.handed import Handed
from transferlab.callbacks.nonfinite import NonFiniteWatch
from transferlab.callbacks.resume_plan import ResumePlan
from transferlab.data.base import EvalRoute
from transferlab.losses.slot import SetupContext, training_sample
from transferlab.methods.accuracy import RunningAccuracy, accuracy_metrics
from transferlab.methods.param_groups import decay_groups
from transferlab.nets.base import Classifier
from transferlab.utils.contract import CHECKPOINT_KEY, RunContract
from transferlab.utils.log import writes_step_logs

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
REPORTS_KEY = "transferlab_reports"  # where a checkpoint keeps the run's reports


class ClassificationModule(L.LightningModule):
    """Base LightningModule: ``net`` maps images to logits; subclasses define the training loss.

    Args:
        net: a ``Classifier`` (``features`` + ``head``) sized for the data's classes.
        optimizer: a partial optimiser, called with the parameter groups (None: evaluation only).
        scheduler: a partial LR scheduler, called with the optimiser (stepped every ``interval``).
        contract: the run's ``RunContract`` (net config, classes, data), written into every
            checkpoint so it can be rebuilt and checked without the run's config files.
    """

    def __init__(
        self,
        net: Classifier,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        contract: RunContract | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.contract = contract or RunContract(net={}, num_classes=net.num_classes)
        num_classes = net.num_classes
        self.train_accuracy = RunningAccuracy(num_classes)  # counters on the device, read per epoch
        # one set of metrics per evaluation route, built in setup() from the datamodule's routes
        self.routes: dict[str, list[EvalRoute]] = {}
        self.route_metrics = nn.ModuleDict()
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.class_accuracy: dict[str, float] = {}  # filled at test time
        self.notes: list[str] = []  # what a reader of the run's results must know (metrics.json)
        # what the run measured besides its metrics (metrics.json "reports"; kept in checkpoints)
        self.reports: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def transfer_term_off(self) -> bool | None:
        """Whether the method's transfer term (λ·R, λ·A, the distillation losses) contributes
        nothing, which makes the run a sweep's control; None for a method without one."""
        return None

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Return (loss terms with a ``loss`` entry, logits, labels) for one training batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        terms, logits, labels = self.training_loss(batch)
        self.train_accuracy.update(logits.detach(), labels)  # logged once, at the epoch's end
        if writes_step_logs(self.trainer):  # self.log costs ~1 ms of host time per value
            self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=labels.shape[0])
        return terms  # the loss, and every term for the callbacks (the non-finite watch)

    def handed_callbacks(self) -> list[Callback]:
        """The engineering every method is handed: the non-finite watch, the test's confusion
        report, and the config's optimiser plan over a resume (a family adds its own)."""
        return [NonFiniteWatch(), ConfusionReport(), ResumePlan()]

    def configure_callbacks(self) -> list[Callback]:
        """Lightning's hook, at every fit and test: the handed callbacks as one (``Handed``), unless
        the trainer has them already (a test after a fit keeps the fit's)."""
        if self._trainer is not None and any(isinstance(c, Handed) for c in self.trainer.callbacks):
            return []
        return [Handed(self.handed_callbacks())]

    def on_train_epoch_end(self) -> None:
        values = self.epoch_values(self.train_accuracy)
        self.log_dict({f"train/{name}": value for name, value in values.items()})

    def epoch_values(self, counter: RunningAccuracy) -> dict[str, torch.Tensor]:
        """``counter``'s values over the epoch, summed over the devices (so logged as they are);
        the counter starts again."""
        values = {}
        if counter.seen:
            values = counter.compute(lambda counts: self.trainer.strategy.reduce(counts, reduce_op="sum"))
        counter.reset()
        return values

    # --- evaluation, one set of metrics per declared route -------------------------------------
    def setup(self, stage: str) -> None:
        if not self.routes:
            self.build_routes()

    def build_routes(self) -> None:
        """Metrics for the datamodule's evaluation routes (one val and one test split without a
        datamodule that declares them)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        declared = getattr(datamodule, "evaluation_routes", None)
        for stage in ("val", "test"):
            self.routes[stage] = declared(stage) if declared else [EvalRoute(stage, f"{stage}/")]
            self.route_metrics[stage] = nn.ModuleList(
                accuracy_metrics(self.net.num_classes, route.prefix) for route in self.routes[stage]
            )

    def evaluate(
        self, stage: str, batch: Any, dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor, EvalRoute]:
        """Classify a labelled batch of the ``dataloader_idx``-th route of ``stage``: log its
        cross-entropy and accuracy under the route's prefix; return the logits, labels, route."""
        if not self.routes:
            self.build_routes()
        route = self.routes[stage][dataloader_idx]
        metrics = self.route_metrics[stage][dataloader_idx]
        images, labels = batch[:2]
        logits = self.evaluation_forward(route, images)
        metrics.update(logits, labels)
        if route.report:  # never logged: read in reported_metrics() for the run's own files
            return logits, labels, route
        loss = nn.functional.cross_entropy(logits, labels)
        batch_size = labels.shape[0]
        self.log(f"{route.prefix}loss", loss, batch_size=batch_size, sync_dist=True, add_dataloader_idx=False)
        self.log_dict(metrics, batch_size=batch_size, add_dataloader_idx=False)
        if route.prefix == "test/":  # the confusion matrix is the headline split's
            self.test_confusion.update(logits, labels)
        return logits, labels, route

    def validation_metric_names(self, routes: Sequence[EvalRoute]) -> set[str]:
        """Every name this method logs at a validation over ``routes`` (a family that logs more
        adds its own): what a checkpoint's monitor or a sweeper may select on."""
        kinds = ("loss", "acc", "acc_top5") if self.net.num_classes > 5 else ("loss", "acc")
        return {f"{route.prefix}{kind}" for route in routes if not route.report for kind in kinds}

    def evaluation_forward(self, route: EvalRoute, images: torch.Tensor) -> torch.Tensor:
        """The logits of an evaluation batch (a family that reads more, such as the features for
        its validators, overrides this)."""
        return self(images)

    def reported_metrics(self, stage: str) -> dict[str, float]:
        """The accuracy of the ``report`` routes of ``stage`` over the epoch (synced), then reset."""
        values = {}
        if stage not in self.routes:
            return values
        for route, metrics in zip(self.routes[stage], self.route_metrics[stage], strict=True):
            if route.report:
                values |= {name: float(value) for name, value in metrics.compute().items()}
                metrics.reset()
        return values

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate("test", batch, dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser; methods override this to set per-group options."""
        return decay_groups("net", self.net.named_parameters())

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError(f"{type(self).__name__} was built without an optimizer")
        optimizer = self.optimizer_factory(self.parameter_groups())
        for group in optimizer.param_groups:  # before the scheduler records its base LRs
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, **self._run_length(self.scheduler_factory))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "name": "lr",
            },
        }

    def _run_length(self, factory: SchedulerFactory) -> dict[str, int]:
        """``total_steps`` for schedulers that need the run's length (OneCycleLR, DANN's annealing)."""
        func = getattr(factory, "func", factory)
        if "total_steps" in inspect.signature(func).parameters:
            return {"total_steps": int(self.trainer.estimated_stepping_batches)}
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.contract.to_dict()
        checkpoint[REPORTS_KEY] = self.reports

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed run keeps what it measured; testing a checkpoint keeps what was measured since
        self.reports = {**dict(checkpoint.get(REPORTS_KEY) or {}), **self.reports}

    # --- what a family gives its slot members ---------------------------------------------------
    def setup_context(self, stage: str, reference: nn.Module | None) -> SetupContext:
        """The ``SetupContext`` of this run for a slot member's ``setup``: this net, ``reference``
        (the frozen source or teacher), the trainer's device, and training images drawn through
        the datamodule's training loader."""
        trainer = self.trainer
        datamodule = trainer.datamodule
        return SetupContext(
            stage=stage,
            net=self.net,
            num_classes=self.net.num_classes,
            device=trainer.strategy.root_device,
            reference=reference,
            training_sample=lambda n: training_sample(datamodule, n),
            training_size=getattr(datamodule, "num_train_images", 0),
            is_global_zero=trainer.is_global_zero,
            broadcast=lambda value: trainer.strategy.broadcast(value, src=0),
        )
