"""What every figure shows and what every term means, in plain words: the ⓘ notes and the glossary.

Design notes:
    The text lives here, as data, so that one test can check that every figure on the
    page (``ids.GRAPH_IDS``) has a note and that every term the page or its figures show
    has a glossary entry. Nothing here names a dataset or a model: notes speak of
    "classes", "stimuli" and "nodes", whatever the loaded dataset and models are. The
    layout renders the notes (``layout.py``); this module imports nothing from Dash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .ids import ID

__all__ = ["FIGURE_NOTES", "GLOSSARY", "FigureNote", "GlossaryEntry", "glossary_terms_in"]


@dataclass(frozen=True)
class FigureNote:
    """The ⓘ note beside one figure: what is plotted, how to read it, what to be careful about."""

    title: str
    what: str
    read: str
    careful: str


@dataclass(frozen=True)
class GlossaryEntry:
    """One glossary term: its name, the spellings the page uses for it, and its meaning."""

    term: str
    definition: str
    aliases: tuple[str, ...] = ()

    def spellings(self) -> tuple[str, ...]:
        """The term and its aliases (how the page may write it)."""
        return (self.term, *self.aliases)


_RDM_CAREFUL = (
    "Colours are relative: with “each RDM ÷ its max” two panels cannot be compared by colour, only by pattern "
    "(choose “shared” to compare levels). With many images per class the map shows block means, so a cell "
    "is an average over several pairs; the hover panel gives the exact pair under the pointer."
)

#: The ⓘ note of every figure, by its graph id.
FIGURE_NOTES: dict[str, FigureNote] = {
    ID.RDM_GRID: FigureNote(
        "RDMs, one per node",
        "One representational dissimilarity matrix (RDM) per chosen node. Rows and columns are the same stimuli, "
        "sorted by class; a cell is how differently the node responds to the two stimuli (the chosen dissimilarity).",
        "Bright = similar, dark = dissimilar (with the default colours). Bright squares on the diagonal mean the "
        "node groups a class together; read the panels left to right to see that structure appear through the network.",
        _RDM_CAREFUL,
    ),
    ID.RDM_SLIDER: FigureNote(
        "One RDM with a node slider",
        "The same RDMs as the row above, one at a time and large; the slider (or ▶ play) steps through the nodes.",
        "Watch the class blocks on the diagonal form, sharpen or fade from node to node. Click a cell to follow that "
        "pair of stimuli through every node (the “Selected pair” panel).",
        _RDM_CAREFUL,
    ),
    ID.DIFF_GRAPH: FigureNote(
        "Difference RDM",
        "Node A's RDM minus node B's, after turning each into ranks in [0, 1], so that only the ordering of the "
        "pairs is compared, not the scale of either RDM.",
        "Red: the pair is relatively more dissimilar in A; blue: more dissimilar in B. Grey cells are pairs whose "
        "sign is not reliable across bootstrap samples of the stimuli.",
        "A rank difference says which pairs moved relative to the others, not how far apart anything is. "
        "The grey mask depends on the number of bootstrap samples and of images per class.",
    ),
    ID.EMBED_GRID: FigureNote(
        "Embeddings grid (PCA, MDS, t-SNE)",
        "Each point is one stimulus, placed in 2-D so that stimuli the node responds to similarly lie close "
        "together. Rows are methods, columns are nodes; colour is the stimulus's class.",
        "Well-separated colour clusters mean the node separates the classes. Under each panel: trustworthiness "
        "(how many 2-D neighbours are true neighbours), and stress (MDS) or perplexity (t-SNE).",
        "A PCA panel's axes are its first two principal components (PC 1, PC 2, each with its share of the variance). "
        "MDS and t-SNE axes have no units and no meaning of their own: each panel may be rotated or mirrored. t-SNE "
        "distorts distances between clusters and cluster sizes; compare panels by their neighbourhoods, not by "
        "positions. Low trustworthiness or high stress means the 2-D picture misrepresents the node.",
    ),
    ID.EMBED_ANIM: FigureNote(
        "Embedding animation through the nodes",
        "One method's embedding, node after node, each frame rotated onto the previous one (Procrustes) so that points move as little as the geometry allows.",
        "Press ▶ play or drag the slider: follow how the class clusters form or merge from node to node. The "
        "frame title gives its trustworthiness and its spread (RMS radius).",
        "Motion between frames is partly an artefact of aligning two independent embeddings; with “rescale frames” "
        "a change of overall spread is hidden (the title still gives the true radius).",
    ),
    ID.EMBED_SHEPARD: FigureNote(
        "Shepard diagrams of the MDS embeddings",
        "For a sample of stimulus pairs: the distance between their features (x) against their distance in the 2-D MDS picture (y).",
        "Points on the dashed diagonal are pairs the picture shows faithfully; a wide cloud means the picture "
        "distorts distances. Kruskal stress-1 sums up the misfit (0 is perfect).",
        "A 2-D picture of a high-dimensional node nearly always compresses large distances; look at where the cloud bends, not only at its width.",
    ),
    ID.PATH_GRAPH: FigureNote(
        "Representational path",
        "Left: the angle between the RDMs of every pair of nodes (and of the reference landmarks, such as the class "
        "labels). Right: those angles laid out in 2-D by metric MDS; each model's nodes are joined in graph order.",
        "Points close together are nodes with similar geometry. A path that heads towards the labels' star is "
        "making the classes more separable; ellipses and intervals show bootstrap uncertainty over the stimuli.",
        "The 2-D path is itself an approximation (its Shepard diagram shows how good); overlapping ellipses mean "
        "a difference the stimuli cannot support. The angles depend on the RDM dissimilarity and the comparison chosen.",
    ),
    ID.PATH_LABELS_GRAPH: FigureNote(
        "Angle to the labels, node by node",
        "For every node, the angle between its RDM and the RDM of the class labels (0 within a class, 1 between "
        "classes): how class-like the node's geometry is.",
        "Lower is closer to the labels. Compare models at the same depth; error bars are bootstrap 95 % intervals, "
        "and a band (when shown) is how much two trainings of the same model with different seeds differ.",
        "A difference smaller than the seed band or the interval is not evidence of a real difference.",
    ),
    ID.PATH_SHEPARD_GRAPH: FigureNote(
        "Shepard diagram of the path",
        "Each pair of points of the path: their true angle (x) against their distance in the 2-D path (y).",
        "Points on the diagonal are faithfully drawn; Kruskal stress-1 sums up the misfit.",
        "With high stress, distances in the path picture are not to be trusted; read the angle matrix instead.",
    ),
    ID.SURVIVE_GRAPH: FigureNote(
        "Do the conclusions survive?",
        "The same path computed with two or three different ways of comparing RDMs, each turned into an angle, aligned onto the first.",
        "If the order of the nodes and their distance to the labels look alike in every panel, the conclusion does not hinge on the choice of comparison.",
        "Each comparison measures something a little different (scale, mean, noise whitening); agreement is "
        "reassuring, disagreement tells you which property drives the result.",
    ),
    ID.METRICS_GRAPH: FigureNote(
        "Geometry across nodes",
        "Two numbers per node of the chosen model: the class-block contrast of its RDM and the mean silhouette of the classes.",
        "Higher is more class-structured. The contrast compares between-class and within-class dissimilarity; the "
        "silhouette asks, stimulus by stimulus, whether it lies closer to its own class than to the nearest other one.",
        "Both are summaries of the class structure only; a node may hold other structure (e.g. stroke width) that neither sees.",
    ),
    ID.SIDE_GRAPH: FigureNote(
        "Models side by side",
        "The RDMs of two or more models, one row per model, all on one colour scale: the same colour means the same "
        "dissimilarity in every panel.",
        "Compare rows at similar depth: which model forms class blocks earlier, or more sharply. The models are the "
        "view's model and the other models ticked under “Models in the path”.",
        "Raw dissimilarities of nodes with very different sizes can differ in level for reasons unrelated to "
        "class structure; compare patterns as well as colours.",
    ),
    ID.PROBE_PROBS: FigureNote(
        "What the model says about your image",
        "The chosen model's probability for each class, for the image you drew or uploaded, after it was prepared like "
        "the dataset's images (the small picture shows what the model saw).",
        "The tallest bar is the prediction. A confident wrong answer is as informative as a right one: compare the "
        "prepared image with the dataset's stimuli in the hover panel.",
        "A drawing is not a dataset image: strokes that are thicker, thinner or off-centre can fool a model that is "
        "accurate on its test set. Probabilities near 1 do not mean the model is right.",
    ),
    ID.PROBE_EMBED: FigureNote(
        "Where your image lands",
        "Each chosen node's embeddings of the stimuli (dots, by class) with your image as a black star. In PCA it is "
        "projected exactly onto the stimuli's principal axes; MDS and t-SNE have no such map, so it is placed at the "
        "mean 2-D position of its nearest stimuli in feature space, joined to them by dotted lines.",
        "A star inside one class's cloud means the node represents your image like that class's stimuli; follow the "
        "panels left to right to see where that happens.",
        "MDS and t-SNE positions are a placement, not a projection: the star sits among its feature-space neighbours "
        "by construction, even when the 2-D picture distorts them.",
    ),
    ID.PROBE_ROWS: FigureNote(
        "Your image's dissimilarities",
        "One row per chosen node: your image's dissimilarity (the sidebar's measure) to every stimulus, the stimuli "
        "sorted by class, as one extra row of that node's RDM.",
        "A bright band over one class means the node finds your image similar to that class's stimuli.",
        "All rows share one colour scale; with Euclidean dissimilarity nodes of different sizes differ in level, "
        "so compare the pattern along a row as well as its colour.",
    ),
    ID.PAIR_GRAPH: FigureNote(
        "The selected pair through the nodes",
        "The dissimilarity of the two selected stimuli at every node of the chosen model. When the RDMs show block means "
        "(many images per class), a clicked cell is a block of pairs: the line is the block's mean (the value the map shows), "
        "the bars ± its SD over the block's pairs, the grey band their min–max.",
        "Rising: the network pulls the two apart; falling: it brings them together. Select a pair by clicking an RDM cell or two points of an embedding; "
        "for single pairs on a block-mean map, lower the RDMs' images per class.",
        "Dissimilarities of different nodes are on different scales (each node has its own dimensionality); "
        "compare the trend, not the values across very different nodes.",
    ),
}

#: Every term the page shows, with its meaning (one entry per concept; aliases are how the page spells it).
GLOSSARY: tuple[GlossaryEntry, ...] = (
    GlossaryEntry(
        "RDM",
        "Representational dissimilarity matrix: for N stimuli, an N × N table of how differently a node responds to "
        "each pair. It describes a representation's geometry independently of its units.",
        ("RDMs", "representational dissimilarity matrix"),
    ),
    GlossaryEntry(
        "node",
        "One step of the network's computation graph (a layer, an activation, an addition...), named as torch.fx "
        "names it. The node selector describes each one in words.",
        ("nodes",),
    ),
    GlossaryEntry("stimulus", "One input image. The RDMs and embeddings use a fixed number of test images per class.", ("stimuli",)),
    GlossaryEntry(
        "correlation distance",
        "1 − Pearson correlation of two stimuli's responses: 0 for responses of the same shape, up to 2 for opposite ones.",
        ("correlation (1 − r)", "1 − r"),
    ),
    GlossaryEntry(
        "squared Euclidean distance",
        "The sum of squared differences between two stimuli's responses, divided by the number of units D so that nodes of different sizes are comparable.",
        ("squared Euclidean / D", "Euclidean"),
    ),
    GlossaryEntry("cosine distance", "1 − cosine of the angle between two stimuli's response vectors.", ("cosine (1 − cos)", "1 − cos")),
    GlossaryEntry(
        "PCA",
        "Principal component analysis: the 2-D linear projection that keeps the most variance. Distances can only shrink; far-apart points may overlap.",
    ),
    GlossaryEntry(
        "principal component",
        "One axis of a PCA picture: PC 1 is the direction along which the features vary most, PC 2 the most after it; "
        "'% var.' on an axis is its share of the features' total variance.",
        ("PC", "PC 1", "PC 2"),
    ),
    GlossaryEntry(
        "MDS",
        "Metric multidimensional scaling: places the points in 2-D so that their distances match the features' "
        "distances as well as possible (measured by stress).",
        ("metric MDS",),
    ),
    GlossaryEntry(
        "t-SNE",
        "t-distributed stochastic neighbour embedding: keeps each point's near neighbours near, at the cost of "
        "distorting distances between clusters and cluster sizes.",
        ("tSNE", "t-sne"),
    ),
    GlossaryEntry(
        "perplexity",
        "t-SNE's setting for how many neighbours each point considers (roughly the effective number of neighbours); titles write it as “perp”.",
        ("perp", "t-SNE perplexity"),
    ),
    GlossaryEntry(
        "trustworthiness",
        "Of the k nearest neighbours a point has in the 2-D picture, how many are also near in the features (1 = all; "
        "values near 0.5 are no better than chance).",
        ("trust",),
    ),
    GlossaryEntry(
        "stress",
        "Kruskal stress-1: how badly the 2-D distances match the true ones, √(Σ(true − plotted)² / Σ true²). "
        "0 is perfect; above about 0.2 the picture is a rough sketch.",
        ("Kruskal stress-1", "stress-1"),
    ),
    GlossaryEntry(
        "Shepard diagram",
        "A scatter of true distance against plotted distance for pairs of points: how faithfully a 2-D picture keeps distances.",
        ("Shepard diagrams",),
    ),
    GlossaryEntry(
        "Procrustes",
        "Rotating, mirroring (and optionally scaling) one 2-D picture onto another so that the same points line up "
        "as well as possible; used to align the animation's frames and the side-by-side paths.",
        ("Procrustes-aligned",),
    ),
    GlossaryEntry("RMS radius", "Root-mean-square distance of the points from their centre: the overall spread of an embedding.", ("RMS", "unit RMS radius")),
    GlossaryEntry(
        "block mean",
        "With many images per class an RDM map has fewer cells than pairs: each cell is the mean dissimilarity over a block "
        "of pairs (a run of rows × a run of columns). Clicking such a cell selects the block: its mean, the standard deviation (SD) "
        "of its pairs and their smallest and largest value, at every node.",
        ("block means", "block-mean", "SD", "standard deviation"),
    ),
    GlossaryEntry(
        "class-block contrast",
        "(mean between-class dissimilarity − mean within-class dissimilarity) / mean dissimilarity of the RDM: "
        "0 when the RDM ignores the classes, higher when classes form blocks.",
        ("block contrast",),
    ),
    GlossaryEntry(
        "silhouette",
        "For each stimulus, (b − a) / max(a, b), where a is its mean distance to its own class and b to the nearest "
        "other class; averaged over stimuli. In [−1, 1]; higher means tighter, better separated classes.",
        ("mean silhouette", "silhouette by class"),
    ),
    GlossaryEntry(
        "representational path",
        "The nodes of one or more networks placed as points so that distances are angles between their RDMs: the "
        "route a stimulus set's geometry takes through the network.",
        ("path", "paths"),
    ),
    GlossaryEntry(
        "RDMs inside the path",
        "Which dissimilarity the path's RDMs are computed with (before they are compared with each other).",
    ),
    GlossaryEntry(
        "cosine → angle",
        "RDMs are compared by a similarity s in [−1, 1] (cosine, a correlation, CKA...), turned into an angle "
        "arccos(s) in radians: 0 for identical geometry, π/2 for unrelated. Angles behave like distances, so the "
        "path can be drawn with MDS.",
        ("as an angle", "angle", "rad"),
    ),
    GlossaryEntry(
        "whitened cosine",
        "rsatoolbox's comparison of RDMs that accounts for the correlated noise of their cells (doubly centred RDMs); "
        "“whitened correlation” also removes their means.",
        ("whitened-cosine angle", "whitened-correlation angle", "whitened correlation"),
    ),
    GlossaryEntry(
        "linear CKA",
        "Centred kernel alignment: compares two nodes' centred Gram matrices (stimulus × stimulus dot products) "
        "rather than their RDMs; invariant to rotations and scaling of the features.",
        ("CKA", "linear-CKA angle"),
    ),
    GlossaryEntry(
        "Kendall's tau-a",
        "A rank correlation of two RDMs' cells that counts concordant minus discordant pairs; slow, so no bootstrap.",
        ("Kendall τ-a angle", "tau-a"),
    ),
    GlossaryEntry(
        "landmarks",
        "Reference points added to a path: the class labels' RDM (the star), and optionally noise (random features) "
        "and shuffled labels, which show what “unrelated” and “chance” look like.",
        ("landmark", "reference landmarks", "labels"),
    ),
    GlossaryEntry(
        "class-group hypothesis",
        "A landmark made of groups of classes (e.g. odd vs even): its RDM says 0 within a group and 1 between "
        "groups, so the path shows how close each node comes to that grouping.",
        ("class-group hypotheses", "hypotheses"),
    ),
    GlossaryEntry(
        "bootstrap CI",
        "95 % confidence interval from resampling the stimuli within each class with replacement and recomputing; drawn as error bars and ellipses.",
        ("bootstrap", "CI", "95 % ellipses", "intervals"),
    ),
    GlossaryEntry(
        "seed variability",
        "How different two trainings of the same model with different random seeds are, node by node: the "
        "smallest difference between models worth interpreting.",
        ("seed band",),
    ),
    GlossaryEntry(
        "FGSM",
        "Fast gradient sign method: an adversarial attack that changes every pixel by ±ε in the direction that most increases the attacked model's loss.",
        ("adversarial",),
    ),
    GlossaryEntry(
        "epsilon",
        "ε, the size of the FGSM perturbation per pixel (0 = clean images); the attacked model is the one whose gradients make it.",
        ("ε", "FGSM ε"),
    ),
    GlossaryEntry(
        "recurrent step",
        "In a recurrent network, one application of the module it calls again and again; the node selector says which step a node belongs to.",
        ("recurrent steps", "step"),
    ),
    GlossaryEntry(
        "input drive",
        "In a recurrent step, the contribution computed once from the input image and added at every step.",
    ),
    GlossaryEntry(
        "recurrent drive",
        "In a recurrent step, the contribution computed from the previous step's state by the repeated module.",
    ),
    GlossaryEntry("ReLU", "Rectified linear unit: keeps positive values and sets negative ones to 0.", ("relu",)),
    GlossaryEntry(
        "convolution",
        "A layer that slides small learned filters (kernels) over the image or the previous layer's channels; "
        "“16 → 16 channels, 3×3 kernel” gives its input and output channels and the filter size.",
        ("conv",),
    ),
    GlossaryEntry("fully connected layer", "A layer in which every output unit is a weighted sum of every input unit.", ("fc", "linear")),
    GlossaryEntry("dropout", "Sets random units to 0 while training; when the dashboard evaluates a model it passes values unchanged."),
    GlossaryEntry("softmax", "Turns the last layer's scores into class probabilities that sum to 1."),
    GlossaryEntry(
        "difference RDM",
        "Rank-transformed RDM of node A minus that of node B; see the ⓘ note beside it.",
        ("rank(A) − rank(B)",),
    ),
)


def glossary_terms_in(text: str) -> set[str]:
    """The glossary terms (by their main name) whose term or an alias appears in ``text`` as a whole word, any case."""
    found = set()
    for entry in GLOSSARY:
        for spelling in entry.spellings():
            if re.search(rf"(?<![\w-]){re.escape(spelling)}(?![\w-])", text, flags=re.IGNORECASE):
                found.add(entry.term)
                break
    return found
