"""The paper's section 5.1-5.2 experiment on a labelled data set (Fashion-MNIST, MNIST): D's features
through a linear L2-SVM with few labels, against a supervised CNN of D's architecture and a randomly
initialised D's features (``dcgan-lab features-svm``).

``features``: D's conv layers max-pooled to 4x4 and concatenated, on the data cache's images.
``classifiers``: the SVM (C chosen on a validation split) and the supervised CNN (its epochs chosen there).
``study``: the label draws, each method per draw, the intervals over draws and the files written.
"""
