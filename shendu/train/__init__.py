"""Training: the plain loop (``train_one_epoch``, ``evaluate``), ``fit`` with callbacks, metrics,
checkpoints with exact resume, ensembles, transfer learning, hyperparameter search, k-fold CV and plots."""

from shendu.train import callbacks, hparam, metrics, plots  # noqa: F401  # noqa: F401,E402
from shendu.train.callbacks import (  # noqa: F401
                                    Callback,
                                    CSVLogger,
                                    EarlyStopping,
                                    JSONLLogger,
                                    LambdaCallback,
                                    LRSchedulerCallback,
                                    ModelCheckpoint,
                                    NaNGuard,
                                    TensorBoard,
                                    find_nonfinite,
)
from shendu.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from shendu.train import divergence, generative  # noqa: F401,E402
from shendu.train.ensemble import Ensemble  # noqa: F401,E402
from shendu.train.hparam import cross_validate, kfold_indices  # noqa: F401,E402
from shendu.train.loop import History, Trainer, evaluate, fit, train_one_epoch, train_step  # noqa: F401
from shendu.train.transfer import freeze, param_groups_with_lrs, replace_head, trainable_parameters, unfreeze  # noqa: F401,E402
