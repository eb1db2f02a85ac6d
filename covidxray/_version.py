__version__ = "0.1.0"


def provenance() -> dict[str, str]:
    """The versions that made a result: covidxray, TensorFlow and Keras.

    The one place that says what a model file, an evaluation and a comparison
    record about the software that made them.
    """
    import keras
    import tensorflow as tf

    return {
        "covidxray_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
