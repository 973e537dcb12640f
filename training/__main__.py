"""`python -m training`: train the model (see --help), or import course weights (`import-weights`)."""

import argparse
import logging
import sys

from training.train import TrainConfig


def parse_split(text: str) -> tuple[float, float, float]:
    parts = tuple(float(part) for part in text.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("--split takes three fractions, e.g. 0.6,0.2,0.2")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument(
        "--labels-csv",
        help="Data_Entry_2017*.csv[.gz] (official) or one-hot CSV (Image, 14 labels, PatientId)",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a dataset folder (images_labels.csv, images/, optional reference/ teacher probabilities); "
        "repeat to combine folders, split by patient over all of them",
    )
    parser.add_argument(
        "--train-only-dataset",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a dataset folder that only ever trains (e.g. thumbnails): never in validation or test",
    )
    parser.add_argument("--images-dir", help="image folder (default: beside the CSV, incl. images_*/images/)")
    parser.add_argument("--out", required=True, help="output folder: model.keras, model_card.json, logs")
    parser.add_argument("--input-size", type=int, default=TrainConfig.input_size)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--warmup-epochs", type=int, default=TrainConfig.warmup_epochs)
    parser.add_argument(
        "--weights",
        default="none",
        help="backbone init: none (random), imagenet (downloads), or a weights file",
    )
    parser.add_argument(
        "--teacher-csv", help="teacher probabilities (Image Index, prob_<label>) to distil from"
    )
    parser.add_argument("--teacher-weight", type=float, default=TrainConfig.teacher_weight)
    parser.add_argument("--mixup", type=float, default=TrainConfig.mixup_alpha, help="mixup alpha (0: off)")
    parser.add_argument("--ema", type=float, default=TrainConfig.ema_decay, help="weight EMA decay (0: off)")
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument(
        "--seed", type=int, default=TrainConfig.seed, help="seed of the patient split (and of training)"
    )
    parser.add_argument(
        "--train-seed",
        type=int,
        help="seed of initialisation, shuffling and augmentation (default: --seed); the split stays",
    )
    parser.add_argument(
        "--split",
        type=parse_split,
        default=TrainConfig.split,
        help="train,validation,test fractions by patient",
    )
    parser.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default=TrainConfig.strategy,
        help="tf.distribute: mirrored = all local GPUs; multiworker = machines in TF_CONFIG",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="final fit on train + validation for exactly --epochs (recipe already chosen on validation)",
    )
    parser.add_argument(
        "--thresholds-from",
        metavar="MODEL_DIR",
        help="needed by --refit: the model folder of the recipe's validation run, whose thresholds it adopts",
    )
    parser.add_argument(
        "--init-from",
        metavar="MODEL_DIR",
        help="start from this model folder's weights (any input size); its training patients only train",
    )
    parser.add_argument("--max-steps", type=int, help="steps per epoch (smoke runs)")
    parser.add_argument("--max-images", type=int, help="use only the first N images (smoke runs)")
    parser.add_argument("--name", default=TrainConfig.name)
    parser.add_argument("--version", default=TrainConfig.version)
    parser.add_argument("--checkpoint-dir", help="default: OUT/checkpoints")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last epoch checkpoint (same options, same data)",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCH",
        help="stop after this epoch, checkpointed (e.g. a time-limited job); --resume continues",
    )
    parser.add_argument(
        "--run-eagerly",
        action="store_true",
        help="run each step op by op instead of tracing a graph (smoke runs, debugging)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "import-weights":
        from training.import_weights import main as import_main

        return import_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from training.train import train  # TensorFlow loads only once the arguments are valid

    try:
        config = TrainConfig(
            labels_csv=args.labels_csv,
            images_dir=args.images_dir,
            datasets=tuple(args.dataset),
            train_only_datasets=tuple(args.train_only_dataset),
            out_dir=args.out,
            input_size=args.input_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_epochs=args.warmup_epochs,
            weights=None if args.weights == "none" else args.weights,
            teacher_csv=args.teacher_csv,
            teacher_weight=args.teacher_weight,
            mixup_alpha=args.mixup,
            ema_decay=args.ema,
            patience=args.patience,
            seed=args.seed,
            train_seed=args.train_seed,
            split=args.split,
            strategy=args.strategy,
            max_steps=args.max_steps,
            max_images=args.max_images,
            name=args.name,
            version=args.version,
            checkpoint_dir=args.checkpoint_dir,
            refit=args.refit,
            thresholds_from=args.thresholds_from,
            init_from=args.init_from,
            resume=args.resume,
            stop_after=args.stop_after,
            run_eagerly=args.run_eagerly,
        )
    except ValueError as error:  # option combinations TrainConfig refuses
        parser.error(str(error))
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
