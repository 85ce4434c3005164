"""Word lists for the transcript grammar, with regular inflection rules.

Lists are whitespace-separated strings so they stay compact; irregular forms
are listed explicitly and everything else is inflected by rule. The topic
lexicons give each conversation arc its own vocabulary so a reply can stay on
the previous turn's subject.
"""

from __future__ import annotations

import functools


def _w(s: str) -> tuple[str, ...]:
  return tuple(dict.fromkeys(s.split()))  # dedupe, keep order


NOUNS = _w("""
apple bag ball basket bed bench bicycle bird blanket boat book bottle bowl box
bread bridge brush bucket bus button cake camera candle car card carpet cart
castle cat chair cheese chicken clock cloud coat coffee computer cookie corner
couch cup curtain desk dog door drawer dress drum egg engine envelope fence
field flag floor flower fork fountain garden gate gift glass glove guitar hammer
hat helmet hill horse house island jacket jar kettle key kitchen ladder lamp
lantern lawn letter lemon map market mirror motorcycle mountain mug napkin
necklace needle nest newspaper notebook ocean orange oven painting pan paper
park pen pencil pepper phone piano picture pillow plate pocket pond pot puzzle
radio rabbit river road rock roof room rope rug sandwich saucer scarf school
scissors shirt shoe shop sink sock sofa spoon stair star station stone stove
street suitcase sweater table tent ticket tower towel toy train tree truck
umbrella van vase wagon wall wallet watch window wheel whistle bakery library
museum theatre stadium hospital airport harbour village cottage farm barn
meadow forest valley canyon desert beach cliff lake waterfall glacier volcano
jungle swamp orchard vineyard bay balcony attic basement garage hallway
staircase chimney porch backyard playground cinema gallery cafe restaurant
pharmacy bookshop supermarket laundrette post office bank parliament
courthouse factory warehouse lighthouse windmill tunnel highway motorway
roundabout crossroads pavement alley avenue lane boulevard square plaza
monument statue fountain pier dock ferry canoe kayak yacht submarine rocket
helicopter airplane tram subway taxi scooter skateboard trolley ambulance
tractor bulldozer crane digger minibus caravan tablet laptop keyboard screen
printer speaker headphone microphone charger cable battery router remote
calendar diary magazine novel comic poster postcard stamp parcel package
invoice receipt brochure leaflet recipe menu bill coin note budget salary
pension mortgage loan rent deposit bargain discount voucher tomato potato
carrot onion garlic cabbage lettuce cucumber pumpkin mushroom bean pea lentil
rice noodle pasta pizza soup salad sausage burger pancake waffle muffin
biscuit pie pudding yoghurt butter honey jam sugar salt flour vinegar sauce
mustard ketchup banana grape melon peach pear plum cherry strawberry
raspberry blueberry pineapple mango coconut lime walnut almond peanut
chocolate candy popcorn tea juice milk lemonade smoothie kitten puppy pony
donkey goat sheep cow pig duck goose swan owl eagle hawk parrot pigeon robin
sparrow crow seagull penguin dolphin whale shark octopus crab lobster turtle
frog snake lizard spider bee butterfly ant beetle mosquito squirrel hedgehog
fox wolf bear deer moose lion tiger elephant giraffe zebra monkey gorilla
kangaroo koala panda camel hippo rhino cousin uncle aunt nephew niece
grandmother grandfather brother sister mother father daughter son husband
wife neighbour friend colleague boss teacher student doctor nurse dentist
plumber electrician carpenter farmer baker butcher chef waiter pilot driver
sailor soldier painter singer dancer actor writer poet artist engineer
scientist lawyer judge mayor banker cashier clerk librarian mechanic
gardener builder cleaner firefighter detective reporter photographer coach
referee captain goalkeeper striker landlord tenant stranger visitor tourist
customer guest audience crowd team band choir orchestra committee council
club company office meeting party wedding birthday holiday festival concert
picnic barbecue parade match game race tournament lesson lecture exam test
interview appointment deadline project report presentation plan idea
question answer problem solution reason mistake accident surprise secret
story joke rumour promise decision choice chance risk habit hobby routine
schedule journey trip flight voyage adventure walk drive ride hike swim
morning afternoon evening night weekend month year decade century moment
minute hour second season spring summer autumn winter breakfast lunch dinner
supper snack feast
""")

ABSTRACT_NOUNS = _w("""
advice anger anxiety balance beauty belief bravery calm comfort confidence
courage curiosity danger delight doubt dream energy envy faith fear freedom
friendship fun grief guilt happiness hate health honesty hope humour
imagination joy justice kindness knowledge laughter liberty loneliness love
loyalty luck memory mercy misery mood nostalgia patience peace pleasure pride
progress regret relief respect sadness shame silence sorrow strength stress
success sympathy talent tension trust truth victory wealth wisdom worry
ambition attention behaviour character charm chaos community conflict
consequence culture curiosity debate democracy discipline effort emotion
evidence excitement experience failure fashion fortune generosity gratitude
harmony history identity independence influence instinct intelligence
jealousy leadership logic motivation opinion opportunity passion patience
permission persuasion philosophy politeness popularity poverty privacy
promise purpose quality reality recognition reputation responsibility
routine satisfaction security sensitivity skill society spirit stability
strategy sympathy technology temper theory tradition tragedy wonder
""")

IRREGULAR_PLURALS = {
    "child": "children", "person": "people", "man": "men", "woman": "women",
    "mouse": "mice", "foot": "feet", "tooth": "teeth", "goose": "geese",
    "knife": "knives", "leaf": "leaves", "shelf": "shelves", "wife": "wives",
    "life": "lives", "half": "halves", "loaf": "loaves", "wolf": "wolves",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "moose": "moose",
    "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes",
    "echo": "echoes", "scissors": "scissors", "volcano": "volcanoes",
    "post office": "post offices", "mango": "mangoes", "cactus": "cacti",
}

# base past participle
IRREGULAR_VERBS = {
    v.split()[0]: tuple(v.split()[1:]) for v in """
be was been|bring brought brought|build built built|buy bought bought
catch caught caught|choose chose chosen|come came come|cut cut cut
do did done|draw drew drawn|drink drank drunk|drive drove driven|eat ate eaten
fall fell fallen|feel felt felt|find found found|fly flew flown
forget forgot forgotten|forgive forgave forgiven|get got got|give gave given
go went gone|grow grew grown|hear heard heard|hide hid hidden|hold held held
keep kept kept|know knew known|lead led led|leave left left|lend lent lent
let let let|lose lost lost|make made made|meet met met|pay paid paid
put put put|read read read|ride rode ridden|ring rang rung|rise rose risen
run ran run|say said said|see saw seen|sell sold sold|send sent sent
set set set|shake shook shaken|shine shone shone|shoot shot shot
show showed shown|sing sang sung|sink sank sunk|sit sat sat|sleep slept slept
speak spoke spoken|spend spent spent|stand stood stood|steal stole stolen
stick stuck stuck|swim swam swum|take took taken|teach taught taught
tear tore torn|tell told told|think thought thought|throw threw thrown
understand understood understood|wake woke woken|wear wore worn|win won won
write wrote written|break broke broken|begin began begun|bite bit bitten
blow blew blown|dig dug dug|hang hung hung|light lit lit|mean meant meant
freeze froze frozen|bend bent bent|sweep swept swept|weave wove woven
prefer preferred preferred|refer referred referred|commit committed committed
regret regretted regretted|admit admitted admitted|upset upset upset
""".replace("\n", "|").split("|") if v.strip()}

TRANSITIVE_VERBS = _w("""
accept admire adopt answer arrange avoid bake borrow bring build buy carry
catch change check choose clean climb collect cook copy count cover cross cut
decorate deliver describe design destroy discover discuss draw drink drive
eat enjoy explain explore fix fill find finish fold follow forget forgive
give grab guess help hide hold hug ignore imagine improve invite join keep
kick kiss know label lend lift like love make measure meet mend miss mix move
need notice open order organise pack paint pass pay pick plan plant play
polish pour prefer prepare print promise protect pull push question read
recommend remember rent repair replace rescue return ride ruin save see sell
send share ship show sign solve sort start steal stop study support survive
take taste teach tell test thank throw touch trust try understand use visit
wash watch wear win wrap write hire fire delay cancel postpone approve reject
confirm compare measure calculate simulate compile debug deploy configure
install update upload download delete rename restore backup encrypt decode
translate summarise review publish edit record mix master rehearse perform
train coach defend attack score referee sketch sculpt photograph frame
harvest water prune dig sow feed walk groom adopt bathe brush chop slice
peel stir whisk boil fry roast grill season serve book pack unpack map
navigate plan schedule budget invest save spend borrow owe refund
""")

INTRANSITIVE_VERBS = _w("""
arrive laugh cry smile sleep wait work travel dance sing swim run walk jump
sit stand fall rise shine rain snow complain agree disagree argue relax
worry hurry wander listen talk shout whisper breathe cough sneeze yawn
blush panic celebrate apologise hesitate improvise retire emigrate commute
exercise jog cycle camp queue vote cheer grumble giggle sigh shiver sweat
""")

ADJECTIVES = _w("""
able angry awful bad beautiful big bitter blue bored brave bright broad
broken busy calm careful cheap cheerful clean clear clever cold comfortable
common cool crazy creamy crisp crowded cruel curious cute damp dark dear deep
delicious different difficult dirty dizzy dry dull eager early easy elegant
empty enormous exciting expensive fair famous fancy fast fat fierce fine flat
fluffy foolish fragile free fresh friendly full funny gentle giant glad
gloomy golden good gorgeous grand great green grumpy handsome happy hard
healthy heavy helpful high hollow honest hot huge hungry icy important
innocent itchy jolly juicy kind large late lazy light little lively lonely
long loose loud lovely low lucky magnificent messy mighty modern narrow
nasty naughty neat nervous new nice noisy odd old orange ordinary patient
perfect pink plain pleasant polite poor popular powerful pretty proud purple
quick quiet rapid rare raw ready real red rich ripe rough round rude sad
safe salty scary selfish serious shallow sharp shiny short shy silly simple
slim slippery slow small smooth soft solid sour spicy splendid square
steady steep sticky stormy strange strict strong stubborn sudden sweet tall
tame tasty tender terrible thick thin thirsty tidy tiny tired tough tricky
ugly unusual upset useful vast warm weak wealthy weird wet white wide wild
wise witty wonderful wooden worried yellow young zealous abstract accurate
ancient annoying anxious ashamed astonishing awkward bizarre bold bumpy
charming chilly clumsy colourful complex confused cosy cranky creative
crucial delighted desperate determined disappointed efficient embarrassed
enthusiastic exhausted faithful fantastic fearless filthy fortunate
frightened frustrated generous genuine glorious graceful grateful gullible
harmless hilarious hopeful horrible humble ideal impatient impressive
incredible jealous joyful legendary logical magical marvellous massive
mysterious natural obvious optimistic peaceful pessimistic playful precious
reliable relieved remarkable reasonable ridiculous robust romantic rusty
sensible sincere sleepy sophisticated spectacular stable stressful superb
suspicious sympathetic thoughtful thrilled tremendous unfair unhappy
unlikely vibrant vivid wasteful wicked wobbly wonky
""")

ADVERBS = _w("""
actually almost already always angrily anyway badly barely boldly briefly
calmly carefully cheerfully clearly closely completely constantly
definitely deliberately easily effectively entirely eventually exactly
extremely fairly finally firmly frankly freely fully gently gladly gradually
happily hardly honestly hopefully immediately instantly kindly largely
lately loudly luckily merely mostly nearly neatly nervously normally
obviously occasionally often openly partly patiently perfectly politely
possibly precisely probably properly quickly quietly rarely readily really
recently regularly roughly rudely sadly safely seldom seriously sharply
silently simply slightly slowly smoothly softly sometimes soon steadily
strangely strictly suddenly surely surprisingly terribly thoroughly
tomorrow tonight truly usually warmly weekly wisely yesterday
""")

NAMES = _w("""
Aaron Abigail Adam Adrian Agnes Aidan Alan Albert Alice Amelia Amir Amy Andrew
Angela Anna Anthony Arthur Asha Barbara Beatrice Benjamin Bernard Beth Bianca
Boris Brian Bridget Bruno Caleb Camila Carl Carmen Caroline Carlos Charlotte
Chen Chloe Claire Colin Connor Daisy Daniel Dara David Deborah Declan Diana
Diego Dmitri Dorothy Duncan Edgar Edith Edward Eileen Elena Eli Eliza Ellen
Emil Emily Eric Esther Ethan Eva Fatima Felix Fern Fiona Francis Frank Freya
Gabriel George Gerald Gloria Grace Gregory Hamid Hannah Harold Harriet Harvey
Hazel Hector Helen Henry Hugo Ian Ingrid Irene Isaac Isabel Ivan Jack Jacob
James Jane Jasmine Jason Jean Jenny Jerome Joan Joel John Jonah Jorge Joseph
Julia Julian June Kamal Karen Kate Keith Kenji Kevin Kim Laura Leo Leon Liam
Lily Linda Lionel Lisa Logan Lorna Louis Lucy Luke Luis Magnus Malcolm Marco
Margaret Maria Marcus Martha Martin Mary Matilda Maya Megan Mia Michael Miles
Mira Molly Nadia Naomi Nathan Neil Nina Noah Nora Oliver Olivia Omar Oscar
Owen Pablo Paige Patrick Paul Pedro Penny Peter Philip Priya Quentin Rachel
Rafael Rahul Ravi Rebecca Reuben Rita Robert Rosa Rose Ruby Rupert Ruth Sam
Sarah Sean Simon Sofia Sophie Stella Stephen Susan Tara Teresa Theo Thomas
Tobias Tom Ursula Valerie Vera Victor Vincent Violet Walter Wendy William
Xavier Yasmin Yusuf Zara Zoe Otto Ada Basil Cedric Delia Enzo Flora Gideon
""")

PLACES = _w("""
Amsterdam Athens Auckland Bangkok Barcelona Beijing Berlin Bogota Boston
Brighton Bristol Brussels Budapest Cairo Calgary Cambridge Cape Town Chicago
Copenhagen Cork Delhi Denver Dublin Edinburgh Florence Geneva Glasgow
Hamburg Havana Helsinki Hong Kong Istanbul Jakarta Kyoto Lagos Leeds Lima
Lisbon Liverpool London Lyon Madrid Manchester Marseille Melbourne Mexico
Miami Milan Montreal Moscow Mumbai Munich Nairobi Naples Newcastle Oslo
Oxford Paris Perth Prague Quebec Reykjavik Riga Rome Santiago Seattle Seoul
Seville Shanghai Singapore Stockholm Sydney Tokyo Toronto Valencia Vancouver
Venice Vienna Warsaw Wellington York Zurich Canada Brazil Chile Egypt
France Germany Greece Iceland India Ireland Italy Japan Kenya Mexico Morocco
Nepal Norway Peru Portugal Scotland Spain Sweden Turkey Vietnam Wales
Australia Argentina Austria Belgium Croatia Denmark Finland Hungary Poland
Cornwall Yorkshire Devon Kent Texas Oregon Vermont Alaska Hawaii Bavaria
Tuscany Provence Patagonia Sahara Himalayas Alps Andes Amazon Danube Thames
""")

RELATIVES = _w("""mother father sister brother aunt uncle cousin grandmother
grandfather neighbour flatmate boss friend colleague teacher landlord
girlfriend boyfriend partner son daughter niece nephew""")

WEEKDAYS = _w("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")

FEELINGS = _w("""happy sad scared lonely nervous excited ashamed guilty proud
relieved exhausted overwhelmed confused hopeful grateful jealous angry lost
stuck anxious restless""")

# Topic lexicons live in their own module; re-exported for the grammar.
from csm_jax.data.synthetic.topics import TOPICS  # noqa: E402  pylint: disable=g-import-not-at-top


@functools.lru_cache(maxsize=None)
def plural(noun: str) -> str:
  if noun in IRREGULAR_PLURALS:
    return IRREGULAR_PLURALS[noun]
  if noun.endswith(("s", "x", "z", "ch", "sh")):
    return noun + "es"
  if noun.endswith("y") and noun[-2:-1] not in "aeiou":
    return noun[:-1] + "ies"
  return noun + "s"


def _doubles(verb: str) -> bool:
  """Short one-vowel consonant-vowel-consonant verbs double: stop -> stopped."""
  vowels = "aeiou"
  return (len(verb) <= 4 and sum(c in vowels for c in verb) == 1
          and verb[-1] not in vowels + "wxy" and verb[-2] in vowels
          and verb[-3] not in vowels)


@functools.lru_cache(maxsize=None)
def third_person(verb: str) -> str:
  if verb in ("be", "have"):
    return {"be": "is", "have": "has"}[verb]
  if verb == "go" or verb == "do":
    return verb + "es"
  return plural(verb) if verb not in IRREGULAR_PLURALS else verb + "s"


@functools.lru_cache(maxsize=None)
def past(verb: str) -> str:
  if verb in IRREGULAR_VERBS:
    return IRREGULAR_VERBS[verb][0]
  if verb.endswith("e"):
    return verb + "d"
  if verb.endswith("y") and verb[-2:-1] not in "aeiou":
    return verb[:-1] + "ied"
  if _doubles(verb):
    return verb + verb[-1] + "ed"
  return verb + "ed"


@functools.lru_cache(maxsize=None)
def participle(verb: str) -> str:
  if verb in IRREGULAR_VERBS:
    return IRREGULAR_VERBS[verb][1]
  return past(verb)


@functools.lru_cache(maxsize=None)
def gerund(verb: str) -> str:
  if verb == "be":
    return "being"
  if verb.endswith("ie"):
    return verb[:-2] + "ying"
  if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
    return verb[:-1] + "ing"
  if _doubles(verb):
    return verb + verb[-1] + "ing"
  return verb + "ing"


_ONES = ("zero one two three four five six seven eight nine ten eleven "
         "twelve thirteen fourteen fifteen sixteen seventeen eighteen "
         "nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
  """Spells 0 <= n < 1,000,000 out in British style ("one hundred and two")."""
  if not 0 <= n < 1_000_000:
    raise ValueError(f"number_words supports 0..999999, got {n}")
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
  if n < 1000:
    rest = n % 100
    return _ONES[n // 100] + " hundred" + (
        "" if rest == 0 else " and " + number_words(rest))
  rest = n % 1000
  head = number_words(n // 1000) + " thousand"
  if rest == 0:
    return head
  return head + (" and " if rest < 100 else " ") + number_words(rest)


def year_words(y: int) -> str:
  """1998 -> "nineteen ninety eight", 2005 -> "two thousand and five"."""
  if 2000 <= y < 2010:
    return number_words(y)
  hi, lo = divmod(y, 100)
  if lo == 0:
    return number_words(hi) + " hundred"
  return number_words(hi) + (" oh " if lo < 10 else " ") + number_words(lo)
