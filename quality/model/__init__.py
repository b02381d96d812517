"""The built-in model (TF-IDF and logistic regression on vetted labels) and active learning.

training: vetted examples, fitting, versions, retrain-due logic; predicting: predictions for
regular items and the serve ranks the claim query orders by; tasks: the Celery entry point.
"""

from __future__ import annotations

from quality.model.predicting import (
    SERVING_ORDERS,
    model_predict_all,
    serve_rank_update,
    serve_ranks_compute,
    serving_order_set,
)
from quality.model.selectors import model_version_list
from quality.model.training import (
    MIN_VETTED,
    MODEL_NAME,
    ModelNotTrainableError,
    model_retrain_due,
    model_retrain_if_due,
    model_supported,
    model_train,
    model_train_enqueue,
    model_train_request,
    vetted_count,
    vetted_examples,
)

__all__ = [
    "MIN_VETTED",
    "MODEL_NAME",
    "SERVING_ORDERS",
    "ModelNotTrainableError",
    "model_predict_all",
    "model_retrain_due",
    "model_retrain_if_due",
    "model_supported",
    "model_train",
    "model_train_enqueue",
    "model_train_request",
    "model_version_list",
    "serve_rank_update",
    "serve_ranks_compute",
    "serving_order_set",
    "vetted_count",
    "vetted_examples",
]
